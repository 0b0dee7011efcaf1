"""Request-reading helpers shared by every route: body limits, content type, identity headers."""

from __future__ import annotations

import itertools
import secrets

from aiohttp import web

from sluice.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_ID_PREFIX = "req_" + secrets.token_hex(6)
_ids = itertools.count(1)


def new_request_id() -> str:
    """Unique across replicas (a random per-process prefix) and cheap (no syscall per request)."""
    return f"{_ID_PREFIX}{next(_ids):012x}"


def presented_key(request: web.Request) -> str | None:
    """The caller's gateway key from ``Authorization: Bearer`` or ``x-api-key`` (Anthropic style)."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


async def read_json_body(request: web.Request, max_bytes: int) -> bytes:
    ctype = request.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"content type must be application/json, got '{ctype or 'none'}'", code="unsupported_media_type"
        )
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(
            f"request body is {length} bytes; the limit is {max_bytes}", code="request_too_large"
        )
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(
            f"request body is over the limit of {max_bytes} bytes", code="request_too_large"
        ) from None
    except (ConnectionError, TimeoutError) as exc:
        raise BadRequest(f"could not read the request body ({type(exc).__name__})") from None


def header_tags(request: web.Request, metadata: dict[str, str] | None) -> tuple[str, ...]:
    """Tags from ``x-sluice-tags: a,b`` plus ``metadata.tags`` (comma-separated)."""
    tags: list[str] = []
    raw = request.headers.get("x-sluice-tags")
    if raw:
        tags.extend(t.strip() for t in raw.split(",") if t.strip())
    if metadata and metadata.get("tags"):
        tags.extend(t.strip() for t in metadata["tags"].split(",") if t.strip())
    return tuple(dict.fromkeys(tags))[:32]
