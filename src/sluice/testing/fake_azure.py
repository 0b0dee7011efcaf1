"""A fake Azure OpenAI upstream: OpenAI's wire format at Azure's deployment and v1 URLs,
``api-key`` auth, the required ``api-version`` on classic URLs, and the empty-choices
``prompt_filter_results`` chunk that opens Azure streams. Faults as in :mod:`fake_openai`."""

from __future__ import annotations

import msgspec
from aiohttp import web

from sluice.testing.fake_openai import FakeOpenAI


def _azure_error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.Response(status=status, body=msgspec.json.encode(body), content_type="application/json")


class FakeAzure(FakeOpenAI):
    def __init__(self, *, slow_s: float = 2.0) -> None:
        super().__init__(slow_s=slow_s)
        self._path = ""
        self.prompt_filter_chunk = True

    def _app(self) -> web.Application:
        app = super()._app()
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._classic)
        app.router.add_post("/openai/v1/chat/completions", self._v1)
        return app

    async def _classic(self, request: web.Request) -> web.StreamResponse:
        if "api-version" not in request.query:
            return _azure_error(404, "404", "Resource not found")
        body = msgspec.json.decode(await request.read())
        self._record(request, body)
        if "api-key" not in request.headers:
            return _azure_error(401, "401", "Access denied due to invalid subscription key.")
        body["model"] = request.match_info["deployment"]  # Azure serves the deployment in the URL
        return await self._answer(request, body)

    async def _v1(self, request: web.Request) -> web.StreamResponse:
        body = msgspec.json.decode(await request.read())
        self._record(request, body)
        return await self._answer(request, body)
