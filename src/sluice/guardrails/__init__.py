"""Guardrails: checks on what goes to a provider and on what comes back.

One module per detector (``pii``, ``secrets``, ``injection``, ``output_schema``, ``webhook``), the
streaming scanner (``scanner``: the hold-back window), the verdicts the request record keeps
(``verdict``), and the per-policy plans (``engine``). Pure: no I/O but the webhook's, which is
handed its HTTP call by the pipeline.
"""
