"""Request-reading helpers shared by every route: body limits, content type, identity headers."""

from __future__ import annotations

import itertools
import secrets

from sluice.errors import UnsupportedMediaType
from sluice.server.wire import Request

_ID_PREFIX = "req_" + secrets.token_hex(6)
_ids = itertools.count(1)


def new_request_id() -> str:
    """Unique across replicas (a random per-process prefix) and cheap (no syscall per request)."""
    return f"{_ID_PREFIX}{next(_ids):012x}"


def presented_key(request: Request) -> str | None:
    """The caller's gateway key from ``Authorization: Bearer`` or ``x-api-key`` (Anthropic style)."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


async def read_json_body(request: Request, limit: int | None = None) -> bytes:
    """The body, once it is known to be JSON; at most ``limit`` bytes where one is given, else
    the server's ``max_body_bytes``."""
    ctype = request.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"content type must be application/json, got '{ctype or 'none'}'", code="unsupported_media_type"
        )
    if limit is not None:
        request.limit_body(limit)
    return await request.read()


def header_tags(request: Request, metadata: dict[str, str] | None) -> tuple[str, ...]:
    """Tags from ``x-sluice-tags: a,b`` plus ``metadata.tags`` (comma-separated)."""
    tags: list[str] = []
    raw = request.headers.get("x-sluice-tags")
    if raw:
        tags.extend(t.strip() for t in raw.split(",") if t.strip())
    if metadata and metadata.get("tags"):
        tags.extend(t.strip() for t in metadata["tags"].split(",") if t.strip())
    return tuple(dict.fromkeys(tags))[:32]
