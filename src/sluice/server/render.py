"""Rendering results and errors to the caller. The error's body comes from the dialect of the
path (``Dialect.error_body``); its headers are the same in every dialect."""

from __future__ import annotations

import math
from collections.abc import Callable

from sluice.errors import SluiceError
from sluice.schema import openai as openai_wire
from sluice.schema.context import RequestContext
from sluice.server.wire import Response

ErrorBody = Callable[[SluiceError], bytes]


def base_headers(ctx: RequestContext) -> dict[str, str]:
    headers = {"x-request-id": ctx.request_id}
    if ctx.provider is not None:
        headers["x-sluice-provider"] = ctx.provider
    if ctx.served_model is not None:
        headers["x-sluice-model"] = ctx.served_model
    if ctx.attempts:
        headers["x-sluice-attempts"] = str(len(ctx.attempts))
    if ctx.route is not None:
        headers["x-sluice-route"] = ctx.route
    if ctx.response_headers:
        headers.update(ctx.response_headers)
    return headers


def error_headers(exc: SluiceError) -> dict[str, str]:
    headers: dict[str, str] = {"x-sluice-error-source": exc.source}
    # Never "retry after 1 s" next to "do not retry": a refusal waiting cannot cure has no retry-after.
    if exc.should_retry is not False and (exc.status in (429, 503) or exc.retry_after is not None):
        wait = exc.retry_after if exc.retry_after is not None else 1.0
        headers["retry-after"] = str(max(0, math.ceil(wait)))
    if exc.should_retry is not None:
        headers["x-should-retry"] = "true" if exc.should_retry else "false"
    headers.update(exc.headers)
    return headers


def error_response(
    exc: SluiceError, ctx: RequestContext | None, body: ErrorBody = openai_wire.error_body
) -> Response:
    headers = base_headers(ctx) if ctx is not None else {}
    headers.update(error_headers(exc))
    return Response(exc.status, body(exc), headers=headers)


def json_response(payload: bytes, ctx: RequestContext | None, status: int = 200) -> Response:
    return Response(status, payload, headers=base_headers(ctx) if ctx is not None else None)
