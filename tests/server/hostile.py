"""What the hostile-client suite needs: an upstream that misbehaves on cue (a raw loopback server
in a thread of its own), the real gateway process in front of it, and a probe that measures a
normal request while an attack runs."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import Gateway, make_gateway

_CHUNK = json.dumps(
    {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
     "choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}]}
).encode()  # fmt: skip


def _completion(text: str) -> bytes:
    return json.dumps({
        "id": "c", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }).encode()  # fmt: skip


class HostileUpstream:
    """An OpenAI-shaped upstream whose model name picks the misbehaviour. Counts its open
    connections, so a test can see the gateway let go of them."""

    def __init__(self) -> None:
        self.port = 0
        self.open = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._big = _completion("z" * (3 * 1024 * 1024))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> HostileUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()

        self._thread = threading.Thread(target=run, name="hostile-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = json.loads(await reader.readexactly(length) or b"{}")
                if not await self._answer(str(body.get("model")), reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        finally:
            self.open -= 1
            writer.close()

    async def _answer(self, model: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False to end the connection."""
        if model == "huge-header":
            writer.write(b"HTTP/1.1 200 OK\r\nx-huge: ")
            await _flood(writer, b"a" * 65536, 100 * 1024 * 1024)
            return False
        if model in ("endless-sse", "flood-stream"):
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            if model == "endless-sse":
                piece = b"data: " + b"b" * 65530
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                piece = b"b" * 65536
            else:
                piece = b"data: " + _CHUNK + b"\n\n"
            await _flood(writer, b"%x\r\n%s\r\n" % (len(piece), piece), 1 << 40)
            return False
        if model == "stall":
            await reader.read()  # never answers; returns when the gateway lets go
            return False
        if model == "retry-inf":
            body = b'{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}'
            writer.write(
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: inf\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
        elif model == "redirect":
            writer.write(
                b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://elsewhere/\r\ncontent-length: 0\r\n\r\n"
            )
        else:
            body = self._big if model == "big" else _completion("fine")
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
            )
            writer.write(body)
        await writer.drain()
        return True


async def _flood(writer: asyncio.StreamWriter, block: bytes, limit: int) -> None:
    sent = 0
    while sent < limit:
        writer.write(block)
        await writer.drain()
        sent += len(block)


HOSTILE_MODELS = ("huge-header", "endless-sse", "flood-stream", "stall", "retry-inf", "redirect", "big", "ok")


def hostile_config(workdir: Path, fake_url: str, hostile_url: str) -> str:
    models = "\n".join(f"  {m}: {{targets: [{{provider: hostile, model: {m}}}]}}" for m in HOSTILE_MODELS)
    return f"""
server:
  admin_key: env:SLUICE_TEST_ADMIN_KEY
  max_body_bytes: 200000
  client_timeout_s: 2
  shutdown_grace_s: 2
store:
  url: sqlite:///{workdir}/sluice.db
  flush_interval_s: 0.05
  key_refresh_s: 0.2
providers:
  up: {{type: openai, base_url: "{fake_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY, timeout_s: 10}}
  hostile: {{type: openai, base_url: "{hostile_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY, timeout_s: 600,
             max_connections: 2}}
models:
  gpt-4o-mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
{models}
teams:
  eng: {{}}
"""


def start_gateway(workdir: Path, fake_url: str, hostile_url: str) -> Gateway:
    gw = make_gateway(workdir, hostile_config(workdir, fake_url, hostile_url))
    gw.create_key("eng")
    gw.create_key("eng", "--tpm", "10000")
    return gw.start()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Probe:
    """Times ``GET /healthz`` on its own keep-alive connection, over and over, in a thread."""

    port: int
    samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def once(self, sock: socket.socket) -> float:
        start = time.perf_counter()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: probe\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head
        return time.perf_counter() - start

    def measure(self, n: int) -> list[float]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            return [self.once(sock) for _ in range(n)]

    def run(self, action: Callable[[], object], interval: float = 0.01, min_s: float = 1.0) -> object:
        """Probe continuously while ``action`` runs (and for ``min_s`` at least, since the gateway
        may still be working after the attacker is done); the action's result."""
        self.samples = []
        self._stop.clear()

        def loop() -> None:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                while not self._stop.is_set():
                    self.samples.append(self.once(sock))
                    time.sleep(interval)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        started = time.monotonic()
        try:
            return action()
        finally:
            time.sleep(max(0.0, min_s - (time.monotonic() - started)))
            self._stop.set()
            self._thread.join(30)


def summary(samples: list[float]) -> tuple[float, float, float]:
    """Median, 90th percentile and worst, in ms."""
    ordered = sorted(samples)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return statistics.median(ordered) * 1000, p90 * 1000, ordered[-1] * 1000


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    up = HostileUpstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, hostile: HostileUpstream) -> Iterator[Gateway]:
    with FakeOpenAI() as fake:
        gateway = start_gateway(tmp_path_factory.mktemp("hostile"), fake.base_url, hostile.base_url)
        yield gateway
        gateway.stop()


def statuses(gw: Gateway, model: str) -> list[int]:
    """The recorded statuses of the requests for a model."""
    conn = sqlite3.connect(gw.db_path)
    try:
        return [r[0] for r in conn.execute("SELECT status FROM requests WHERE requested_model = ?", (model,))]
    finally:
        conn.close()


def records(gw: Gateway, where: str, *args: object) -> list[sqlite3.Row]:
    conn = sqlite3.connect(gw.db_path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(f"SELECT * FROM requests WHERE {where}", args).fetchall()
    finally:
        conn.close()
