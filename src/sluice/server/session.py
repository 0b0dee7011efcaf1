"""The console's sessions: a signed, stateless cookie and its CSRF token.

Signing in (``POST /ui/api/session``) with an admin key or a gateway key sets
``sluice_session`` — HttpOnly, SameSite=Strict, Path=/ (``Secure`` behind an HTTPS proxy that says
so with ``x-forwarded-proto``). The cookie holds who signed in, a fingerprint of the key, a random
session id and an expiry, signed with HMAC-SHA256 under the gateway's key secret, so every replica
can check it and none stores it. It never holds the key: a session ends when it expires, when the
admin key is removed from the policy or its secret changes, or when the gateway key is revoked.

Every change made with a session needs ``x-csrf-token``: an HMAC of the session id, given by the
sign-in answer and ``GET /ui/api/session`` (a page on another site can neither read it nor send the
cookie: SameSite=Strict). A request with an ``Origin`` other than the gateway's own is refused too.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from typing import Any

from sluice.config.admin import ROOT_ADMIN_NAME
from sluice.errors import PermissionDenied
from sluice.server.authz import Admin, admin_for_secret
from sluice.server.wire import Request

COOKIE = "sluice_session"
#: A session lasts this long (seconds), then the console asks for the key again.
SESSION_S = 8 * 3600


def _sign(hmac_key: bytes, data: bytes) -> str:
    return hmac.digest(hmac_key, b"sluice-session:" + data, "sha256").hex()


def fingerprint(hmac_key: bytes, secret: str) -> str:
    return hmac.digest(hmac_key, b"sluice-admin-key:" + secret.encode(), "sha256").hex()[:32]


def csrf_token(hmac_key: bytes, sid: str) -> str:
    return hmac.digest(hmac_key, b"sluice-csrf:" + sid.encode(), "sha256").hex()[:40]


def issue(hmac_key: bytes, payload: dict[str, Any]) -> tuple[str, str]:
    """(cookie value, CSRF token) for a new session of ``payload`` (``k``: kind, ``n``, ``f``)."""
    sid = secrets.token_urlsafe(16)
    body = {**payload, "s": sid, "e": int(time.time()) + SESSION_S}
    raw = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{raw}.{_sign(hmac_key, raw.encode())}", csrf_token(hmac_key, sid)


def cookie_header(value: str, request: Request, *, max_age: int = SESSION_S) -> str:
    secure = "; Secure" if request.headers.get("x-forwarded-proto", "").lower() == "https" else ""
    return f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"


def _cookie(request: Request) -> str | None:
    for part in request.headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def payload(request: Request) -> dict[str, Any] | None:
    """The session's signed contents, if its cookie is there, intact and not expired."""
    value = _cookie(request)
    if value is None or value.count(".") != 1 or len(value) > 2048:
        return None
    raw, _, sig = value.partition(".")
    if not hmac.compare_digest(sig.encode(), _sign(request.services.hmac_key, raw.encode()).encode()):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("e"), int) or body["e"] < time.time():
        return None
    return body


async def from_request(request: Request) -> Admin | None:
    """The caller of a valid session, re-checked against the policy and the keys in force now."""
    body = payload(request)
    if body is None:
        return None
    svc = request.services
    if body.get("k") == "admin":
        return _admin_now(request, str(body.get("n")), str(body.get("f")))
    if body.get("k") == "key":
        principal = svc.keys.active(str(body.get("n")))
        if principal is None:
            return None
        label = principal.name or principal.key_id
        return Admin(f"key:{label}", "team_viewer", frozenset({principal.team}), via="session")
    return None


def _admin_now(request: Request, name: str, fp: str) -> Admin | None:
    config = request.services.config
    hmac_key = request.services.hmac_key
    candidates = []
    if name == ROOT_ADMIN_NAME and config.server.admin_key is not None:
        candidates.append(config.server.admin_key.reveal())
    candidates.extend(k.key.reveal() for k in config.server.admin_keys if k.name == name)
    for secret in candidates:
        if secret and hmac.compare_digest(fingerprint(hmac_key, secret).encode(), fp.encode()):
            found = admin_for_secret(config, secret)
            if found is not None:
                return Admin(found.name, found.role, found.teams, via="session")
    return None


def check_csrf(request: Request) -> None:
    """A change made with a session carries its CSRF token and comes from the gateway's own origin."""
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if origin is not None and origin.split("://", 1)[-1] != host:
        raise PermissionDenied(f"cross-origin change refused (origin {origin!r})", code="csrf_failed")
    body = payload(request)
    token = request.headers.get("x-csrf-token", "")
    expected = csrf_token(request.services.hmac_key, str(body["s"])) if body is not None else ""
    if body is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise PermissionDenied("missing or invalid CSRF token: send x-csrf-token", code="csrf_failed")
