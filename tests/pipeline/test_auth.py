"""KeyCache against a real SQLite store: lookups, allow-lists, refresh, revocation."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.config.model import TeamConfig
from sluice.errors import AuthenticationFailed, NotFound, PermissionDenied
from sluice.pipeline.auth import KeyCache, make_authorize_middleware
from sluice.schema.chat import ChatResponse
from sluice.schema.context import RequestContext, Result
from sluice.store.keys import new_key
from sluice.store.sqlite import SQLiteStore

HMAC = b"h" * 32


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "k.db"))
    await s.open()
    yield s
    await s.close()


async def test_authenticate_new_key_at_once_and_revocation(store: SQLiteStore) -> None:
    cache = KeyCache(store, HMAC, {"eng": TeamConfig(models=["a", "b"])}, refresh_s=60)
    await cache.start()
    secret, rec = new_key(HMAC, team="eng", user="u", models=("b", "c"))
    await store.create_key(rec)  # made elsewhere (the CLI): the cache has not seen it
    principal = await cache.authenticate(secret)
    assert (principal.key_id, principal.team, principal.user) == (rec.id, "eng", "u")
    assert principal.models == frozenset({"b"}), "key allow-list ∩ team allow-list"
    await store.revoke_key(rec.id, time.time())
    await cache.reload()
    with pytest.raises(AuthenticationFailed):
        await cache.authenticate(secret)
    await cache.stop()


async def test_missing_wrong_and_forgotten_keys(store: SQLiteStore) -> None:
    cache = KeyCache(store, HMAC, {}, refresh_s=60)
    await cache.start()
    with pytest.raises(AuthenticationFailed, match="missing"):
        await cache.authenticate(None)
    with pytest.raises(AuthenticationFailed, match="invalid"):
        await cache.authenticate("sk-sluice-wrong")
    secret, rec = new_key(HMAC, team="eng")
    await store.create_key(rec)
    assert (await cache.authenticate(secret)).models is None
    cache.forget(rec.id)
    # Forgotten locally; the store still lists it, so only a revocation keeps it out.
    await store.revoke_key(rec.id, time.time())
    with pytest.raises(AuthenticationFailed):
        await cache.authenticate(secret)
    await cache.stop()


async def test_authorize_middleware() -> None:
    from sluice.schema.context import Principal

    mw = make_authorize_middleware(frozenset({"a", "b"}))

    async def terminal(ctx: RequestContext) -> Result:
        return ChatResponse(choices=[])

    def ctx(model: str, allowed: frozenset[str] | None) -> RequestContext:
        c = RequestContext(
            request_id="r", dialect="openai", endpoint="chat", presented_key=None, requested_model=model
        )
        c.principal = Principal(key_id="k", team="t", user=None, name=None, models=allowed)
        return c

    assert isinstance(await mw(ctx("a", None), terminal), ChatResponse)
    with pytest.raises(NotFound):
        await mw(ctx("zzz", None), terminal)
    with pytest.raises(PermissionDenied, match="'b'"):
        await mw(ctx("b", frozenset({"a"})), terminal)
