"""Gateway keys: what a new key may be given, secret generation and HMAC-SHA256 hashing. The
secret is shown once, never stored."""

from __future__ import annotations

import dataclasses
import hmac
import os
import secrets
import time
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from sluice.errors import BadRequest, ConfigError
from sluice.store.records import KeyRecord
from sluice.store.sqlite import sqlite_path

KEY_PREFIX = "sk-sluice-"


def hash_key(secret: str, hmac_key: bytes) -> str:
    # hmac.digest is the one-shot C path: several times cheaper than hmac.new(...).hexdigest().
    return hmac.digest(hmac_key, secret.encode("utf-8"), "sha256").hex()


def new_key(
    hmac_key: bytes,
    *,
    team: str,
    user: str | None = None,
    name: str | None = None,
    models: tuple[str, ...] | None = None,
) -> tuple[str, KeyRecord]:
    """Make a key: returns (the secret to show once, the record to store)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    record = KeyRecord(
        id="key_" + secrets.token_hex(8),
        hash=hash_key(secret, hmac_key),
        prefix=secret[: len(KEY_PREFIX) + 6],
        team=team,
        user=user,
        name=name,
        models=models,
        created_at=time.time(),
    )
    return secret, record


def resolve_hmac_key(store_url: str, configured: str | None) -> bytes:
    """The HMAC key: ``server.key_secret`` if set; for SQLite, a local key file next to the database."""
    if configured:
        return configured.encode("utf-8")
    if store_url.startswith("sqlite:"):
        path = sqlite_path(store_url)
        if path == ":memory:":
            return secrets.token_bytes(32)
        return load_or_create_hmac_key(Path(path + ".key"))
    raise ConfigError(
        "a shared store needs server.key_secret (env:NAME) so every replica hashes keys alike "
        "- at `$.server.key_secret`"
    )


def load_or_create_hmac_key(path: Path) -> bytes:
    """The local HMAC key for a SQLite store: created once with mode 0600 next to the database."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: wait for it to write, use theirs
        for _ in range(100):
            text = path.read_text().strip()
            if len(text) == 64:
                return bytes.fromhex(text)
            time.sleep(0.01)
        raise
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key


#: Largest count a key limit may be: what every store's integer column holds (SQLite, PostgreSQL
#: BIGINT); past it a request would fail in the database instead of getting a 400.
_MAX_COUNT = 2**63 - 1
_Count = Annotated[int, msgspec.Meta(gt=0, le=_MAX_COUNT)]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    """What a new key may be given: by ``POST /admin/keys`` and by ``sluice keys create``."""

    team: str
    user: str | None = None
    name: str | None = None
    models: list[str] | None = None
    rpm: _Count | None = None
    tpm: _Count | None = None
    concurrent: _Count | None = None
    budget_usd: Annotated[float, msgspec.Meta(ge=0, le=1e15)] | None = None
    budget_period: Literal["daily", "weekly", "monthly"] | None = None


def validate_key_request(models: Collection[str], teams: Collection[str], spec: KeyCreate) -> None:
    """The key's team and models must be declared in the policy."""
    if spec.team not in teams:
        raise BadRequest(f"unknown team '{spec.team}': teams are declared in the policy file", param="team")
    for m in spec.models or []:
        if m not in models:
            raise BadRequest(f"unknown model '{m}'", param="models")


def key_from_spec(hmac_key: bytes, spec: KeyCreate) -> tuple[str, KeyRecord]:
    """A new key (secret, record) with the spec's identity and limits."""
    secret, record = new_key(
        hmac_key, team=spec.team, user=spec.user, name=spec.name,
        models=tuple(spec.models) if spec.models is not None else None,
    )  # fmt: skip
    return secret, dataclasses.replace(
        record, rpm=spec.rpm, tpm=spec.tpm, concurrent=spec.concurrent, budget_usd=spec.budget_usd,
        budget_period=spec.budget_period or ("monthly" if spec.budget_usd is not None else None),
    )  # fmt: skip
