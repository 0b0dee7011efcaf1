"""Canonical request/response types, the ingress dialects, and the SSE codec. Pure: no I/O."""
