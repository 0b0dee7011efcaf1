"""Gateway-key authentication and model authorisation.

Keys are cached in memory (a dict from HMAC hash to record), so authenticating costs one HMAC and
one dict lookup, never a database read. The cache reloads when the store's key fingerprint changes
(every ``key_refresh_s``), and at once — coalesced — when an unknown key is presented (one shared check however many arrive), so a key
made by ``sluice keys create`` works on its first request and a revocation anywhere takes effect
within ``key_refresh_s`` on every replica (immediately on the replica that revoked it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Mapping
from decimal import Decimal

from sluice.config.limits import BudgetConfig, RateLimitConfig
from sluice.config.model import TeamConfig
from sluice.errors import AuthenticationFailed, NotFound, PermissionDenied
from sluice.limits.model import LevelLimits
from sluice.schema.context import CallNext, Middleware, Principal, RequestContext, Result
from sluice.store.base import Store, StoreUnavailable
from sluice.store.keys import hash_key
from sluice.store.records import KeyRecord

log = logging.getLogger("sluice.auth")


def key_limits(key: KeyRecord) -> LevelLimits | None:
    """The key's own limits from its record's columns (None when it has none)."""
    rate = None
    if key.rpm is not None or key.tpm is not None or key.concurrent is not None:
        rate = RateLimitConfig(rpm=key.rpm, tpm=key.tpm, concurrent=key.concurrent)
    budget = None
    if key.budget_usd is not None:
        period = key.budget_period if key.budget_period in ("daily", "weekly", "monthly") else "monthly"
        budget = BudgetConfig(usd=Decimal(str(key.budget_usd)), period=period)  # type: ignore[arg-type]
    return LevelLimits(rate, budget) if rate is not None or budget is not None else None


class KeyCache:
    def __init__(
        self, store: Store, hmac_key: bytes, teams: Mapping[str, TeamConfig], refresh_s: float
    ) -> None:
        self._store = store
        self._hmac_key = hmac_key
        self._teams = teams
        self._refresh_s = refresh_s
        #: Indexed by the first 16 hex digits of the hash; the full hash is compared in constant time.
        self._by_prefix: dict[str, list[tuple[str, Principal]]] = {}
        self._version: tuple[float, int] | None = None
        self._reload_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[None] | None = None

    def _principal(self, key: KeyRecord) -> Principal:
        team = self._teams.get(key.team)
        allowed: frozenset[str] | None = None
        if key.models is not None:
            allowed = frozenset(key.models)
        if team is not None and team.models is not None:
            team_models = frozenset(team.models)
            allowed = team_models if allowed is None else allowed & team_models
        return Principal(
            key_id=key.id, team=key.team, user=key.user, name=key.name, models=allowed, limits=key_limits(key)
        )

    async def use_teams(self, teams: Mapping[str, TeamConfig]) -> None:
        """A reloaded policy's teams: every key's principal is rebuilt with them at once."""
        self._teams = teams
        await self.reload(force=True)

    async def reload(self, *, force: bool = False) -> None:
        async with self._reload_lock:
            version = await self._store.keys_version()
            if not force and version == self._version:
                return
            keys = await self._store.list_keys(include_revoked=False)
            index: dict[str, list[tuple[str, Principal]]] = {}
            for k in keys:
                index.setdefault(k.hash[:16], []).append((k.hash, self._principal(k)))
            self._by_prefix = index
            self._version = version

    async def start(self) -> None:
        await self.reload(force=True)
        self._task = asyncio.create_task(self._refresh_loop(), name="sluice-key-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.reload()
            except StoreUnavailable as exc:
                # Keep serving with the keys we know; a revocation waits for the store to return.
                log.warning("key refresh failed, serving cached keys: %s", exc)

    async def _check_for_new_keys(self) -> None:
        """Single-flight: concurrent misses share one fingerprint check (one cheap query)."""
        inflight = self._inflight
        if inflight is None or inflight.done():
            inflight = asyncio.ensure_future(self.reload())
            self._inflight = inflight
        await asyncio.shield(inflight)

    def forget(self, key_id: str) -> None:
        """Drop a revoked key at once on this replica."""
        self._by_prefix = {
            prefix: kept
            for prefix, entries in self._by_prefix.items()
            if (kept := [(h, p) for h, p in entries if p.key_id != key_id])
        }

    async def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise AuthenticationFailed(
                "missing gateway key: send 'Authorization: Bearer sk-sluice-...'", code="missing_api_key"
            )
        digest = hash_key(presented, self._hmac_key)
        principal = self._lookup(digest)
        if principal is None:
            with contextlib.suppress(StoreUnavailable):
                await self._check_for_new_keys()
            principal = self._lookup(digest)
        if principal is None:
            raise AuthenticationFailed("invalid or revoked gateway key", code="invalid_api_key")
        return principal

    def _lookup(self, digest: str) -> Principal | None:
        found: Principal | None = None
        for stored, principal in self._by_prefix.get(digest[:16], ()):
            if hmac.compare_digest(stored, digest):
                found = principal
        return found


def make_authorize_middleware(known_models: frozenset[str]) -> Middleware:
    """The caller was authenticated by the server before its body was read; here the model it
    asked for is checked against what exists and what its key and team may use."""

    async def authorize(ctx: RequestContext, call_next: CallNext) -> Result:
        principal = ctx.principal
        if principal is None:
            raise AuthenticationFailed("missing gateway key", code="missing_api_key")
        model = ctx.requested_model
        if model not in known_models:
            raise NotFound(
                f"model '{model}' does not exist on this gateway", param="model", code="model_not_found"
            )
        if not principal.may_use(model):
            raise PermissionDenied(
                f"this key may not use model '{model}'", param="model", code="model_not_allowed"
            )
        return await call_next(ctx)

    return authorize
