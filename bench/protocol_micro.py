"""Micro-benchmark of the HTTP/1.1 server connection alone (``server/protocol.py``), no sockets.

``.venv/bin/python bench/protocol_micro.py [N]`` feeds N keep-alive ``POST``s, one read each,
through ``HttpProtocol`` on a fake transport with a handler that reads the body and answers, and
prints the CPU microseconds per request. ``pipeline_micro.py`` drives the dispatcher and leaves
the protocol out; this is the other half. For stable figures run it under
``valgrind --tool=callgrind`` with two values of N and divide the difference of the instruction
counts by the difference of N (issue #18: 125.0k -> 128.8k instructions per request). Never part
of the test run.
"""

from __future__ import annotations

import asyncio
import sys
import time
import types

from sluice.server.protocol import HttpProtocol, ServerState
from sluice.server.wire import Request, Response


class _Transport:
    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def close(self) -> None:
        pass

    abort = close

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


BODY = b'{"model":"m","messages":[{"role":"user","content":"hello there"}]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-abc\r\n"
    b"content-type: application/json\r\nuser-agent: OpenAI/Python 1.50\r\nx-stainless-lang: python\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


async def _handler(request: Request) -> Response:
    await request.read()
    return Response(200, b'{"ok":true}')


async def run(n: int) -> float:
    state = ServerState(types.SimpleNamespace(draining=False), _handler, max_body=1 << 20)  # type: ignore[arg-type]
    conn = HttpProtocol(state)
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    start = time.process_time()
    for _ in range(n):
        conn.data_received(REQUEST)
        while conn._active is not None:
            await asyncio.sleep(0)
    elapsed = time.process_time() - start
    assert transport.writes == n
    return elapsed / n * 1e6


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(f"{asyncio.run(run(count)):.1f} CPU us per request ({count} requests)")
