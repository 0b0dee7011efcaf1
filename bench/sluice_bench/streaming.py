"""Streaming client: time to first token, and many concurrent slow streams.

Each stream is checked, not just timed: every content chunk the upstream sent must arrive (count and
text), and the stream must end with ``data: [DONE]``. TTFT is the time from sending the request to the
first event that carries content.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from sluice_bench import payloads
from sluice_bench.procs import TreeSampler, rss_bytes


class OpenTracker:
    """Counts streams whose response headers arrived and that have not finished yet."""

    def __init__(self, on_peak: Callable[[int], None] | None = None) -> None:
        self.now = 0
        self.peak = 0
        self.on_peak = on_peak

    def opened(self) -> None:
        self.now += 1
        if self.now > self.peak:
            self.peak = self.now
            if self.on_peak is not None:
                self.on_peak(self.now)

    def closed(self) -> None:
        self.now -= 1


@dataclass
class StreamOutcome:
    ok: bool
    ttft_s: float | None
    total_s: float
    chunks: int
    done: bool
    error: str | None = None


def expected_text(n: int) -> str:
    words = [payloads.REPLY_WORDS[i % len(payloads.REPLY_WORDS)] for i in range(n)]
    return " ".join(words)


def _content_of(payload: bytes) -> str:
    obj = json.loads(payload)
    choices = obj.get("choices") or []
    if not choices:
        return ""
    delta = choices[0].get("delta") or {}
    content = delta.get("content")
    return content if isinstance(content, str) else ""


async def one_stream(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    n_chunks: int,
    tracker: OpenTracker | None = None,
) -> StreamOutcome:
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            if resp.status != 200:
                text = (await resp.read())[:300].decode(errors="replace")
                return StreamOutcome(
                    False, None, time.perf_counter() - t0, 0, False, f"HTTP {resp.status}: {text}"
                )
            if tracker is not None:
                tracker.opened()
            try:
                return await _read_events(resp, t0, n_chunks)
            finally:
                if tracker is not None:
                    tracker.closed()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return StreamOutcome(False, None, time.perf_counter() - t0, 0, False, f"{type(exc).__name__}: {exc}")


async def _read_events(resp: aiohttp.ClientResponse, t0: float, n_chunks: int) -> StreamOutcome:
    ttft: float | None = None
    chunks = 0
    done = False
    parts: list[str] = []
    try:
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            content = _content_of(data)
            if content:
                if ttft is None:
                    ttft = time.perf_counter() - t0
                chunks += 1
                parts.append(content)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return StreamOutcome(
            False, ttft, time.perf_counter() - t0, chunks, done, f"{type(exc).__name__}: {exc}"
        )
    total = time.perf_counter() - t0
    text_ok = "".join(parts) == expected_text(n_chunks)
    ok = done and chunks == n_chunks and text_ok
    error = None if ok else f"chunks={chunks}/{n_chunks} done={done} text_ok={text_ok}"
    return StreamOutcome(ok, ttft, total, chunks, done, error)


def _pct(vals: list[float], q: float) -> float | None:
    if not vals:
        return None
    s = sorted(vals)
    idx = min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))
    return s[idx]


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 3)


def summarise(outcomes: list[StreamOutcome], n_chunks: int) -> dict[str, object]:
    ttfts = [o.ttft_s for o in outcomes if o.ttft_s is not None]
    totals = [o.total_s for o in outcomes if o.ok]
    errors = [o.error for o in outcomes if not o.ok and o.error]
    return {
        "streams": len(outcomes),
        "complete": sum(1 for o in outcomes if o.ok),
        "every_chunk": all(o.ok for o in outcomes) and bool(outcomes),
        "chunks_expected_each": n_chunks,
        "chunks_received": sum(o.chunks for o in outcomes),
        "ttft_ms": {
            "p50": _ms(_pct(ttfts, 50)),
            "p90": _ms(_pct(ttfts, 90)),
            "p99": _ms(_pct(ttfts, 99)),
            "mean": _ms(sum(ttfts) / len(ttfts) if ttfts else None),
        },
        "duration_ms": {"p50": _ms(_pct(totals, 50)), "p99": _ms(_pct(totals, 99))},
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
    }


def _session(limit: int, timeout: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, force_close=False),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def ttft_samples(
    url: str,
    key: str,
    model: str,
    *,
    n_chunks: int,
    concurrency: int,
    streams: int,
    timeout: float = 60.0,
) -> list[StreamOutcome]:
    """``streams`` streams, ``concurrency`` at a time, on warm connections; summarise() the result."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = payloads.chat_request(model, stream=True)
    outcomes: list[StreamOutcome] = []
    async with _session(concurrency, timeout) as session:
        # Warm the connection pool so TTFT excludes the TCP handshake to the gateway.
        await asyncio.gather(*(one_stream(session, url, headers, body, n_chunks) for _ in range(concurrency)))
        queue = list(range(streams))

        async def worker() -> None:
            while queue:
                queue.pop()
                outcomes.append(await one_stream(session, url, headers, body, n_chunks))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


async def concurrent_test(
    url: str,
    key: str,
    model: str,
    *,
    n_chunks: int,
    streams: int,
    gateway_pids: Callable[[], list[int]] | None,
    ramp_s: float = 1.0,
    timeout: float = 120.0,
) -> dict[str, object]:
    """Open ``streams`` slow streams at once (ramped over ``ramp_s``); RSS of the gateway at the plateau.

    The plateau figure is the gateway's RSS the moment every stream is open at once, and the peak
    sampled every 100 ms while they run; per stream is (peak - before) / streams.
    """
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = payloads.chat_request(model, stream=True)
    plateau_rss = 0

    def on_peak(n: int) -> None:
        nonlocal plateau_rss
        if gateway_pids is not None and n == streams:
            plateau_rss = rss_bytes(gateway_pids())

    tracker = OpenTracker(on_peak)
    idle_rss = rss_bytes(gateway_pids()) if gateway_pids is not None else 0
    sampler = TreeSampler(gateway_pids) if gateway_pids is not None else None
    t0 = time.perf_counter()
    async with _session(0, timeout) as session:
        if sampler is not None:
            sampler.__enter__()
        try:
            tasks: list[asyncio.Task[StreamOutcome]] = []
            steps = 20
            batch = max(1, -(-streams // steps))
            for i in range(0, streams, batch):
                for _ in range(min(batch, streams - i)):
                    tasks.append(
                        asyncio.create_task(one_stream(session, url, headers, body, n_chunks, tracker))
                    )
                await asyncio.sleep(ramp_s / steps)
            outcomes = list(await asyncio.gather(*tasks))
        finally:
            if sampler is not None:
                sampler.__exit__(None, None, None)
    out = summarise(outcomes, n_chunks)
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    out["max_open"] = tracker.peak
    if sampler is not None:
        peak = max(sampler.peak, plateau_rss)
        out["rss_before_mb"] = round(idle_rss / 2**20, 1)
        out["rss_plateau_mb"] = round(plateau_rss / 2**20, 1) if plateau_rss else None
        out["rss_peak_mb"] = round(peak / 2**20, 1)
        out["rss_per_stream_kb"] = round((peak - idle_rss) / 1024 / max(1, streams), 1)
    return out
