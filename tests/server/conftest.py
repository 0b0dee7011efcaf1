"""Fixtures of the server tests: a real server on 127.0.0.1 port 0, in the test's own loop.

Every async test under tests/server runs twice: on asyncio's own loop and on uvloop, the loop the
gateway runs on in production.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sluice.server.protocol import HttpProtocol, ServerState
from tests.server.harness import Handler, Harness

ServerFactory = Callable[..., Awaitable[Harness]]


def pytest_asyncio_loop_factories(
    config: Any, item: Any
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of the gateway
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


@pytest.fixture
async def serve() -> AsyncIterator[ServerFactory]:
    """``await serve(handler, max_body=..., keepalive_s=..., slow_client_s=...)`` starts a server."""
    harnesses: list[Harness] = []

    async def start(handler: Handler, *, max_body: int = 1024, **limits: float) -> Harness:
        services = types.SimpleNamespace(draining=False)
        state = ServerState(services, handler, max_body=max_body, **limits)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: HttpProtocol(state), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        harness = Harness(state, server, port, services)
        harnesses.append(harness)
        return harness

    yield start
    for h in harnesses:
        for client in h.clients:
            client.close()
        h.server.close()
        for conn in list(h.state.connections):
            conn.cancel()
        await asyncio.sleep(0)
        await h.server.wait_closed()
