"""Run an aiohttp app on 127.0.0.1 in the current loop or in a thread of its own.

A thread of its own matters when a test drives the gateway with a *synchronous* client: a fake
living in the test's event loop would never get to answer.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any, Self

import msgspec
from aiohttp import web


class LoopbackServer:
    def __init__(self, make_app: Callable[[], web.Application], path: str = "") -> None:
        self._make_app = make_app
        self._path = path
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self._path}"

    async def start(self) -> Self:
        self._runner = web.AppRunner(self._make_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- in a thread of its own

    def start_in_thread(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="sluice-fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()


class FakeUpstream(LoopbackServer):
    """What every fake provider shares: the log of requests it received (also served at
    ``GET /_requests``) and the delay of its ``fault-slow`` model."""

    def __init__(self, path: str = "", *, slow_s: float = 2.0) -> None:
        super().__init__(self._make_fake_app, path)
        self.slow_s = slow_s
        self.requests: list[dict[str, Any]] = []
        self.bill = Bill()

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _make_fake_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.add_routes(app)
        app.router.add_get("/_requests", self._recorded)
        app.router.add_get("/_bill", self.bill.serve)
        return app

    async def read_json(self, request: web.Request) -> Any:
        """The request's JSON body, logged with its path and headers (the last 1,000 are kept)."""
        body = msgspec.json.decode(await request.read())
        self.requests.append({"path": request.path_qs, "headers": dict(request.headers), "body": body})
        del self.requests[:-1000]
        return body

    async def _recorded(self, request: web.Request) -> web.Response:
        return web.Response(body=msgspec.json.encode(self.requests), content_type="application/json")


class Bill:
    """What a fake upstream would charge: one line per answer it sent — whole, or cut part-way
    (then only the tokens it sent, ``partial``). Served at ``GET /_bill`` as the CSV that
    ``sluice reconcile --from`` reads, so a test compares the ledger with the fake's own account."""

    def __init__(self, *, keep: bool = True) -> None:
        #: False: nothing is kept (the gateway's built-in demo upstream keeps nothing).
        self.keep = keep
        self.lines: list[dict[str, Any]] = []

    def charge(
        self, request_id: str, model: str, input_tokens: int, output_tokens: int, *, cached: int = 0,
        cache_write: int = 0, partial: bool = False,
    ) -> None:  # fmt: skip
        """``input_tokens`` OpenAI-style: cache reads (``cached``) and writes included."""
        if not self.keep:
            return
        self.lines.append({"request_id": request_id, "model": model, "input_tokens": input_tokens,
                           "output_tokens": output_tokens, "cached_tokens": cached, "cache_write_tokens": cache_write,
                           "partial": partial})  # fmt: skip

    def csv(self) -> str:
        head = "request_id,model,input_tokens,output_tokens,cached_tokens,cache_write_tokens,partial\n"
        return head + "".join(
            f"{b['request_id']},{b['model']},{b['input_tokens']},{b['output_tokens']},{b['cached_tokens']},"
            f"{b['cache_write_tokens']},{int(b['partial'])}\n"
            for b in self.lines
        )

    async def serve(self, request: web.Request) -> web.Response:
        return web.Response(text=self.csv(), content_type="text/csv")


def new_upstream_id(prefix: str) -> str:
    """A provider-style id, unique per answer (as real providers' request ids are)."""
    return prefix + uuid.uuid4().hex[:24]
