"""Routing requests to handlers, and the last line of defence for errors.

Paths are matched exactly (a dict lookup), or by a template whose last segment is a parameter:
``/admin/keys/{key_id}`` (one segment) or ``/v1/models/{model:.+}`` (the rest of the path).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sluice.errors import ServiceUnavailable, SluiceError
from sluice.schema.context import RequestContext
from sluice.server.render import error_response
from sluice.server.wire import Handler, Request, Response, StreamResponse
from sluice.store.base import StoreUnavailable

log = logging.getLogger("sluice.server")


class RouteTable:
    """Routes declared with decorators, as each ``*_routes`` module does."""

    def __init__(self) -> None:
        self.exact: dict[str, dict[str, Handler]] = {}
        #: (prefix, parameter name, whole rest of the path?) -> method -> handler
        self.templates: dict[tuple[str, str, bool], dict[str, Handler]] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        if "{" not in path:
            self.exact.setdefault(path, {})[method] = handler
            return
        prefix, _, param = path.partition("{")
        if not param.endswith("}") or "/" in param:
            raise ValueError(f"unsupported route template {path!r}")
        name, _, pattern = param[:-1].partition(":")
        if pattern not in ("", ".+"):
            raise ValueError(f"unsupported route pattern {pattern!r} in {path!r}")
        self.templates.setdefault((prefix, name, pattern == ".+"), {})[method] = handler

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self._decorator("GET", path)

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self._decorator("POST", path)

    def delete(self, path: str) -> Callable[[Handler], Handler]:
        return self._decorator("DELETE", path)

    def _decorator(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(method, path, handler)
            return handler

        return register


class Dispatcher:
    """Finds the handler for a request and turns every failure into an error object."""

    def __init__(self, *tables: RouteTable) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._templates: list[tuple[str, str, bool, dict[str, Handler]]] = []
        for table in tables:
            for path, methods in table.exact.items():
                self._exact.setdefault(path, {}).update(methods)
            for (prefix, name, rest), methods in table.templates.items():
                self._templates.append((prefix, name, rest, methods))

    def resolve(self, request: Request) -> dict[str, Handler] | None:
        methods = self._exact.get(request.path)
        if methods is not None:
            return methods
        path = request.path
        for prefix, name, rest, methods in self._templates:
            if path.startswith(prefix):
                value = path[len(prefix) :]
                if value and (rest or "/" not in value):
                    request.match_info[name] = value
                    return methods
        return None

    async def __call__(self, request: Request) -> Response | StreamResponse:
        methods = self.resolve(request)
        if methods is None:
            return _status_error(404, "not_found", f"no such endpoint: {request.method} {request.path}")
        handler = methods.get(request.method)
        if handler is None and request.method == "HEAD":
            # HEAD is GET without the body (RFC 9110 §9.3.2): the server sends the head only.
            handler = methods.get("GET")
        if handler is None:
            resp = _status_error(
                405, "bad_request", f"method not allowed on this endpoint: {request.method} {request.path}"
            )
            allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())
            resp.headers["allow"] = ", ".join(sorted(allowed))
            return resp
        try:
            return await handler(request)
        except StoreUnavailable as exc:
            log.error("store unavailable during %s: %s", request.path, exc)
            return error_response(ServiceUnavailable("the gateway's store is unavailable"), None)
        except SluiceError as exc:
            return error_response(exc, None)
        except (ConnectionError, TimeoutError) as exc:
            log.info("connection error on %s %s: %s", request.method, request.path, type(exc).__name__)
            return _internal_error(request)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return _internal_error(request)


def _internal_error(request: Request) -> Response:
    """The 500 of a handler that failed unexpectedly, in the request log like every answer."""
    err = SluiceError("internal gateway error")
    ctx = request.context
    if isinstance(ctx, RequestContext) and ctx.finished_at is None:
        request.services.accounting.fail(ctx, err)
    return error_response(err, None)


def _status_error(status: int, kind: str, message: str) -> Response:
    err = SluiceError(message)
    err.status = status
    err.kind = kind
    return error_response(err, None)
