"""Sluice's own HTTP/1.1 server (``protocol``, ``wire``), the dispatcher, one Dialect per API
(parse → canonical request; render response, stream, error), the one chat handler, and the
routes: ``openai_routes``, ``anthropic_routes``, ``admin_routes``. Handlers stay thin."""
