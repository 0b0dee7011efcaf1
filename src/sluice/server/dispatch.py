"""Routing requests to handlers; the one place errors are rendered.

Paths are matched exactly (a dict lookup), or by a template whose last segment is a parameter:
``/admin/keys/{key_id}`` (one segment) or ``/v1/models/{model:.+}`` (the rest of the path).

A :class:`RouteTable` made with a dialect declares that dialect's API routes with :meth:`~RouteTable.api`:
their handlers get a :class:`RequestContext` made here, so an error they raise is answered with the
request's headers (``x-request-id``, ``x-ratelimit-*`` ...). Plain routes (the admin API, probes)
take the request alone. Whatever a handler raises, and every 404 and 405, is rendered here in the
dialect of the path (:class:`~sluice.server.dialect.DialectMap`); the protocol asks
:meth:`Dispatcher.refusal_body` for the errors it answers itself (431, malformed requests).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias

from sluice.errors import BadRequest, NotFound, ServiceUnavailable, SluiceError
from sluice.schema.context import Endpoint, RequestContext
from sluice.server.dialect import Dialect, DialectMap
from sluice.server.http import new_request_id, presented_key
from sluice.server.openai_dialect import OPENAI
from sluice.server.render import error_response
from sluice.server.wire import AnyResponse, Handler, Request, Response
from sluice.store.base import StoreUnavailable

log = logging.getLogger("sluice.server")

#: A dialect route's handler: the request and the context the dispatcher made for it.
ApiHandler: TypeAlias = Callable[[Request, RequestContext], Awaitable[AnyResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One method on one path: a plain ``handler``, or an ``api`` handler of ``dialect``."""

    handler: Handler | None = None
    api: ApiHandler | None = None
    dialect: Dialect | None = None
    endpoint: Endpoint = "chat"


Methods: TypeAlias = dict[str, Route]


class RouteTable:
    """The routes of one module. ``RouteTable(dialect)`` for an API's routes (``api``), plain
    ``RouteTable()`` for routes that take the request alone (``add`` or the decorators)."""

    def __init__(self, dialect: Dialect | None = None) -> None:
        self.dialect = dialect
        self.exact: dict[str, Methods] = {}
        #: (prefix, parameter name, whole rest of the path?) -> method -> route
        self.templates: dict[tuple[str, str, bool], Methods] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        self._put(method, path, Route(handler=handler))

    def api(self, method: str, path: str, handler: ApiHandler, *, endpoint: Endpoint = "chat") -> None:
        if self.dialect is None:
            raise ValueError(f"{method} {path}: api routes need a RouteTable made with a dialect")
        self._put(method, path, Route(api=handler, dialect=self.dialect, endpoint=endpoint))

    def _put(self, method: str, path: str, route: Route) -> None:
        if "{" not in path:
            self.exact.setdefault(path, {})[method] = route
            return
        prefix, _, param = path.partition("{")
        if not param.endswith("}") or "/" in param:
            raise ValueError(f"unsupported route template {path!r}")
        name, _, pattern = param[:-1].partition(":")
        if pattern not in ("", ".+"):
            raise ValueError(f"unsupported route pattern {pattern!r} in {path!r}")
        self.templates.setdefault((prefix, name, pattern == ".+"), {})[method] = route

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

    def paths(self) -> list[tuple[str, str]]:
        """(method, path) of every route, templates as declared (for docs and tests)."""
        out = [(m, p) for p, methods in self.exact.items() for m in methods]
        for (prefix, name, rest), methods in self.templates.items():
            out.extend((m, f"{prefix}{{{name}{':.+' if rest else ''}}}") for m in methods)
        return out


class Dispatcher:
    """Finds the route of a request and turns every failure into an error in the path's dialect.
    ``default``: the dialect of paths no table's dialect owns (the admin API, ``/healthz``)."""

    def __init__(self, *tables: RouteTable, default: Dialect = OPENAI) -> None:
        self.tables = tables
        self._exact: dict[str, Methods] = {}
        self._templates: list[tuple[str, str, bool, Methods]] = []
        for table in tables:
            for path, methods in table.exact.items():
                self._exact.setdefault(path, {}).update(methods)
            for (prefix, name, rest), methods in table.templates.items():
                self._templates.append((prefix, name, rest, methods))
        self.dialect_of = DialectMap(default, [t.dialect for t in tables if t.dialect is not None])

    def resolve(self, request: Request) -> Methods | None:
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

    async def __call__(self, request: Request) -> AnyResponse:
        methods = self.resolve(request)
        if methods is None:
            exc: SluiceError = NotFound(f"no such endpoint: {request.method} {request.path}")
            return error_response(exc, None, self.dialect_of(request.path).error_body)
        route = methods.get(request.method)
        if route is None and request.method == "HEAD":
            # HEAD is GET without the body (RFC 9110 §9.3.2): the server sends the head only.
            route = methods.get("GET")
        if route is None:
            return self._not_allowed(request, methods)
        ctx: RequestContext | None = None
        try:
            if route.api is not None:
                assert route.dialect is not None
                ctx = RequestContext(
                    request_id=new_request_id(), dialect=route.dialect.name, endpoint=route.endpoint,
                    presented_key=presented_key(request), traceparent=request.headers.get("traceparent"),
                    cache_control=request.headers.get("cache-control"),
                    cache_threshold=request.headers.get("x-sluice-cache-threshold"),
                )  # fmt: skip
                return await route.api(request, ctx)
            assert route.handler is not None
            return await route.handler(request)
        except Exception as exc:  # every failure is answered, in the path's dialect
            dialect = route.dialect or self.dialect_of(request.path)
            err = _as_sluice_error(request, exc)
            if not isinstance(exc, SluiceError | StoreUnavailable):
                _record_internal_error(request, ctx, err)
            return error_response(err, ctx, dialect.error_body)

    def _not_allowed(self, request: Request, methods: Methods) -> Response:
        exc = BadRequest(f"method not allowed on this endpoint: {request.method} {request.path}")
        exc.status = 405
        resp = error_response(exc, None, self.dialect_of(request.path).error_body)
        allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())
        resp.headers["allow"] = ", ".join(sorted(allowed))
        return resp

    def refusal_body(self, target: str, status: int, message: str) -> bytes:
        """The body of an error the protocol answers before any handler runs (431, a request it
        cannot parse), in the dialect of the request's path (as far as it arrived)."""
        exc = BadRequest(message)
        exc.status = status
        if status == 413:
            exc.kind = "too_large"
        return self.dialect_of(target.partition("?")[0]).error_body(exc)


def _record_internal_error(request: Request, ctx: RequestContext | None, err: SluiceError) -> None:
    """A handler that failed unexpectedly: its 500 is in the request log like every answer, once
    (a context the pipeline already recorded has ``finished_at`` set)."""
    ctx = ctx if ctx is not None else request.context if isinstance(request.context, RequestContext) else None
    if ctx is not None and ctx.finished_at is None:
        request.services.accounting.fail(ctx, err)


def _as_sluice_error(request: Request, exc: Exception) -> SluiceError:
    if isinstance(exc, StoreUnavailable):
        log.error("store unavailable during %s: %s", request.path, exc)
        return ServiceUnavailable("the gateway's store is unavailable")
    if isinstance(exc, SluiceError):
        return exc
    if isinstance(exc, ConnectionError | TimeoutError):
        log.info("connection error on %s %s: %s", request.method, request.path, type(exc).__name__)
    else:
        log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return SluiceError("internal gateway error")
