"""Operations endpoints behind ``server.admin_key``: the policy in force, and reloading it."""

from __future__ import annotations

import msgspec

from sluice.errors import BadRequest, SluiceError
from sluice.schema.openai import encode
from sluice.server.admin_routes import check_admin
from sluice.server.dispatch import RouteTable
from sluice.server.http import read_json_body
from sluice.server.render import error_response
from sluice.server.wire import Request, Response

routes = RouteTable()


@routes.get("/admin/policy")
async def policy(request: Request) -> Response:
    """The version (file hash) being served, the last reload's outcome, what needs a restart."""
    svc = request.services
    try:
        check_admin(request)
    except SluiceError as exc:
        return error_response(exc, None)
    view = svc.reloader.view() if svc.reloader is not None else {"version": svc.policy_version}
    return Response(200, encode(view))


@routes.post("/admin/reload")
async def reload(request: Request) -> Response:
    """Load the policy file again: 200 when applied (or unchanged), 422 when it was refused
    (the old policy keeps serving; the error is in the body)."""
    svc = request.services
    try:
        check_admin(request)
        await _no_fields(request)
    except SluiceError as exc:
        return error_response(exc, None)
    if svc.reloader is None:
        return Response(
            409, encode({"error": {"message": "no policy file to reload", "type": "invalid_request_error"}})
        )
    ok, view = await svc.reloader.reload("admin")
    if ok:
        return Response(200, encode(view))
    body = {**view, "error": {"message": view.get("error", "reload failed"), "type": "invalid_request_error"}}
    return Response(422, encode(body))


async def _no_fields(request: Request) -> None:
    """The reload takes no fields; a body, if sent, must still be JSON (like every POST)."""
    if request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        return
    body = await read_json_body(request)
    if body.strip():
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError:
            raise BadRequest("the body must be JSON (POST /admin/reload takes no fields)") from None
