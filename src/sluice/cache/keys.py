"""Exact-cache keys: the whole canonical request minus a short denylist, plus where it was routed.

A denylist, not an allow-list: a request field the gateway does not know yet (``extra_body``) or a
new OpenAI parameter is part of the key, so two requests that differ in anything that can change
the answer never share one. Only the fields below are dropped, because they cannot change it:

* ``stream``, ``stream_options`` — an answer is replayed as a stream or served whole on demand;
* ``user`` — an end-user id for abuse tracking (the *scope* partitions entries, not this);
* ``metadata`` — tags for the caller's own bookkeeping (OpenAI's stored-completions metadata);
* embeddings: ``encoding_format`` (the gateway converts float ⇄ base64 itself) and ``user``.

The key also covers the endpoint, the resolved route and model, the scope (kind and identity) and
both versions (``cache.version`` and the route's ``version``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

import msgspec

from sluice.config.cache import Scope
from sluice.schema.chat import ChatRequest
from sluice.schema.context import Principal
from sluice.schema.embeddings import EmbeddingRequest

DENIED_CHAT_FIELDS: Final = ("stream", "stream_options", "user", "metadata")
DENIED_EMBEDDING_FIELDS: Final = ("encoding_format", "user")

# Sorted keys: two encodings of the same request are the same bytes whatever the dict order.
_encode = msgspec.json.Encoder(order="sorted").encode
_CHAT_BLANK: Final = {name: None for name in DENIED_CHAT_FIELDS if name != "stream"}
_EMB_BLANK: Final = {name: None for name in DENIED_EMBEDDING_FIELDS}
GLOBAL_TEAM: Final = "*"


@dataclass(frozen=True, slots=True)
class Partition:
    """Where an entry lives. ``scope_id`` is part of every key: entries never cross it."""

    scope: Scope
    scope_id: str
    #: The team the entry is filed under, for ``sluice cache clear --team`` ("*" for global).
    team: str


def partition(scope: Scope, principal: Principal) -> Partition:
    if scope == "key":
        return Partition(scope, principal.key_id, principal.team)
    if scope == "team":
        return Partition(scope, principal.team, principal.team)
    return Partition(scope, "", GLOBAL_TEAM)


@dataclass(frozen=True, slots=True)
class KeyParts:
    """Everything besides the request body that a key covers."""

    endpoint: str
    route: str
    model: str
    part: Partition
    version: int
    route_version: int


def chat_body(req: ChatRequest) -> bytes:
    """The request as the key sees it: the denylisted fields removed."""
    return _encode(msgspec.structs.replace(req, stream=False, **_CHAT_BLANK))


def embedding_body(req: EmbeddingRequest) -> bytes:
    return _encode(msgspec.structs.replace(req, **_EMB_BLANK))


def derive(parts: KeyParts, body: bytes) -> str:
    """``route/team/digest``: the prefix lets a store clear by route or team; the digest covers
    every part (so the prefix alone never decides a match)."""
    p = parts.part
    head = "\x00".join(
        (parts.endpoint, parts.route, parts.model, p.scope, p.scope_id, p.team,
         str(parts.version), str(parts.route_version))
    )  # fmt: skip
    h = hashlib.sha256(head.encode() + b"\x01")  # SHA-256: hardware-accelerated on most CPUs
    h.update(body)
    digest = h.hexdigest()[:40]
    return f"{_safe(parts.route)}/{_safe(p.team)}/{digest}"


def namespace(route: str | None, team: str | None) -> tuple[str | None, str | None]:
    """The (route, team) prefix parts of keys, as :func:`derive` spells them."""
    return (_safe(route) if route is not None else None, _safe(team) if team is not None else None)


_SAFE: dict[str, str] = {}


def _safe(name: str) -> str:
    # Route and team names come from the policy (a bounded set, so memoised): '/' and glob
    # characters would confuse the prefixes a store clears by.
    out = _SAFE.get(name)
    if out is None:
        out = "".join(c if c.isalnum() or c in "-_." else f"%{ord(c):02x}" for c in name)
        if len(_SAFE) < 100_000:
            _SAFE[name] = out
    return out
