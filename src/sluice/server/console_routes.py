"""The web console (``/ui``): its files, and signing in and out (``/ui/api/session``).

The page's data comes from the ``/admin/*`` JSON endpoints, which obey the roles; a session
cookie authenticates them the way a bearer admin key does (``server/session.py``)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import msgspec

from sluice.errors import AuthenticationFailed, BadRequest, NotFound
from sluice.schema.openai import decode_json_object, encode
from sluice.server import session
from sluice.server.authz import Admin, admin_enabled, admin_for_secret
from sluice.server.dispatch import RouteTable
from sluice.server.http import read_json_body
from sluice.server.wire import Request, Response

routes = RouteTable()
#: No script, style, frame or connection from anywhere but the gateway itself.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@functools.lru_cache(maxsize=16)
def asset(name: str) -> tuple[bytes, str] | None:
    """(bytes, content type) of a file of the console (package data of ``sluice.console``), or
    None for an unknown name (and for anything that looks like a path)."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or "\\" in name or name.startswith(".") or suffix not in CONTENT_TYPES:
        return None
    path = resources.files("sluice.console").joinpath("static", name)
    if not path.is_file():
        return None
    return path.read_bytes(), CONTENT_TYPES[suffix]


def _file(name: str, cache: str) -> Response:
    found = asset(name)
    if found is None:
        raise NotFound(f"no such console file: {name}")
    body, ctype = found
    return Response(200, body, content_type=ctype, headers={**SECURITY_HEADERS, "cache-control": cache})


@routes.get("/ui")
async def page(request: Request) -> Response:
    return _file("index.html", "no-store")


@routes.get("/ui/")
async def page_slash(request: Request) -> Response:
    return _file("index.html", "no-store")


@routes.get("/ui/static/{name}")
async def static(request: Request) -> Response:
    return _file(request.param("name"), "no-cache")


def _who(admin: Admin, csrf: str) -> dict[str, Any]:
    return {"name": admin.name, "role": admin.role, "can_write": admin.can_write,
            "teams": sorted(admin.teams) if admin.teams is not None else None, "csrf": csrf}  # fmt: skip


class SignIn(msgspec.Struct, forbid_unknown_fields=True):
    key: str = ""


@routes.post("/ui/api/session")
async def sign_in(request: Request) -> Response:
    """Sign in with an admin key (its role) or a gateway key (read-only, its team)."""
    svc = request.services
    if not admin_enabled(svc.config):
        raise AuthenticationFailed("the console is disabled: set server.admin_key or server.admin_keys")
    data = decode_json_object(await read_json_body(request, limit=4096))
    try:
        key = msgspec.convert(data, SignIn).key.strip()
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid sign-in: {exc}") from None
    if not key:
        raise AuthenticationFailed("missing key: sign in with an admin key or a gateway key")
    admin = admin_for_secret(svc.config, key)
    if admin is not None:
        payload = {"k": "admin", "n": admin.name, "f": session.fingerprint(svc.hmac_key, key)}
    else:
        try:
            principal = await svc.keys.authenticate(key)
        except AuthenticationFailed:
            raise AuthenticationFailed("invalid key: sign in with an admin key or a gateway key") from None
        payload = {"k": "key", "n": principal.key_id}
        admin = Admin(f"key:{principal.name or principal.key_id}", "team_viewer", frozenset({principal.team}))
    cookie, csrf = session.issue(svc.hmac_key, payload)
    headers = {"set-cookie": session.cookie_header(cookie, request), "cache-control": "no-store"}
    return Response(200, encode({"signed_in": True, **_who(admin, csrf)}), headers=headers)


@routes.get("/ui/api/session")
async def whoami(request: Request) -> Response:
    """Who is signed in and the session's CSRF token; ``{"signed_in": false}`` without a valid
    session (a 200: the page asks this before anyone signs in)."""
    body = session.payload(request)
    admin = await session.from_request(request) if body is not None else None
    if body is None or admin is None:
        return Response(200, encode({"signed_in": False}), headers={"cache-control": "no-store"})
    csrf = session.csrf_token(request.services.hmac_key, str(body["s"]))
    return Response(
        200, encode({"signed_in": True, **_who(admin, csrf)}), headers={"cache-control": "no-store"}
    )


@routes.delete("/ui/api/session")
async def sign_out(request: Request) -> Response:
    if session.payload(request) is not None:
        session.check_csrf(request)
    return Response(
        200,
        encode({"signed_out": True}),
        headers={"set-cookie": session.cookie_header("", request, max_age=0)},
    )
