"""Bench cell for guardrails: ``pii`` + ``secrets`` on input and output, 2 KB prompts.

``.venv/bin/python bench/guardrails_micro.py [N]`` measures, with the real services and dispatcher
(SQLite store, key, request log; the upstream call replaced by an in-memory answer, as in
``pipeline_micro.py``):

1. main-thread CPU µs per non-streamed request, guardrails off vs on (``action: redact``, both
   directions), on a ~2 KB prompt and a ~2 KB answer — the added cost is the difference;
2. CPU µs the streaming scanner adds per chunk and per stream (the bench's 20-chunk SSE stream);
3. what the hold-back window does to time to first token: a paced stream (a chunk every
   ``PACE_MS``) through the scanner, first content byte out vs in.

Never part of the test run; figures are noisy on a shared machine (report them as such).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import yaml  # noqa: E402
from sluice_bench import payloads  # noqa: E402

from sluice.app import dispatcher, running  # noqa: E402
from sluice.config.guardrails import PiiGuardrail, SecretsGuardrail  # noqa: E402
from sluice.config.loader import parse_config  # noqa: E402
from sluice.guardrails.engine import RequestState, build_guard, build_plan  # noqa: E402
from sluice.guardrails.scanner import StreamScanner  # noqa: E402
from sluice.schema.chat import ChatChunk  # noqa: E402
from sluice.schema.upstream import UpstreamResponse  # noqa: E402
from sluice.server.protocol import ServerState  # noqa: E402
from sluice.server.wire import Request, Response  # noqa: E402
from sluice.store.keys import new_key  # noqa: E402
from sluice.transport import client  # noqa: E402

PACE_MS = 20
CONFIG = """
store: {{url: "sqlite:///{db}"}}
providers:
  up: {{type: openai, base_url: "http://127.0.0.1:9/v1", api_key: "env:BENCH_MICRO_KEY"}}
models:
  {model}: {{targets: [{{provider: up, model: {model}}}]}}
teams:
  bench: {{}}
"""
GUARDRAILS = """
guardrails:
  pii: {type: pii, action: redact, on: [input, output]}
  secrets: {type: secrets, action: redact, on: [input, output]}
routing: {guardrails: [pii, secrets]}
"""
#: ~2 KB of ordinary business text with digits, dates, versions and one email: the detectors run
#: their full paths (digits present, '@' present) rather than the cheap skips.
_PARA = (
    "Quarterly notes: revenue 4.2M (+12% QoQ), churn 1.8%, 31% of new bookings from the enterprise tier "
    "launched in week 3. Release 2.14.1 shipped on 2024-03-18; the billing migration (ETA Q3) is on track. "
    "Contact the analytics team lead at ana.lytics@example.com for the raw figures. "
)
PROMPT_TEXT = (_PARA * 9)[:2048]
ANSWER_TEXT = (_PARA * 9)[:2048]
#: The same prompt with nothing to redact: what most requests look like.
CLEAN_PROMPT = PROMPT_TEXT.replace("ana.lytics@example.com", "the analytics lead")


def _request_body(prompt: str) -> bytes:
    return msgspec.json.encode({
        "model": payloads.MODEL, "temperature": 0.2, "max_tokens": 256,
        "messages": [{"role": "system", "content": "You are concise."}, {"role": "user", "content": prompt}],
    })  # fmt: skip


def _answer_body(text: str) -> bytes:
    data = msgspec.json.decode(payloads.chat_completion())
    data["choices"][0]["message"]["content"] = text
    return msgspec.json.encode(data)


#: The answer the fake upstream gives: the bench's usual ~280-character reply, or ~2 KB.
_ANSWER = [_answer_body(payloads.REPLY_TEXT)]


async def _answer(self: Any, req: Any, deadline: Any) -> UpstreamResponse:
    return UpstreamResponse(200, {"content-type": "application/json"}, _ANSWER[0])


class _Conn:
    closed = False

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


async def cpu_per_request(n: int, guardrails: bool, prompt: str, unique: bool = False) -> float:
    """``unique``: every request's prompt differs (a counter in it), so no detector cache helps."""
    client.Transport.send = _answer  # type: ignore[method-assign]
    os.environ.setdefault("BENCH_MICRO_KEY", "sk-upstream")
    with tempfile.TemporaryDirectory() as tmp:
        text = CONFIG.format(db=f"{tmp}/bench.db", model=payloads.MODEL) + (GUARDRAILS if guardrails else "")
        config = parse_config(yaml.safe_load(text))
        async with running(config) as svc:
            secret, record = new_key(svc.hmac_key, team="bench", user=None, name="bench", models=None)
            await svc.store.create_key(replace(record, rpm=None))
            await svc.keys.reload(force=True)
            state = ServerState(svc, dispatcher(), max_body=config.server.max_body_bytes)
            bodies = [
                _request_body(f"{i:05d} {prompt[6:]}" if unique else prompt)
                for i in range(5000 if unique else 1)
            ]
            turn = [0]

            async def one() -> None:
                body = bodies[turn[0] % len(bodies)]
                turn[0] += 1
                headers = {"host": "127.0.0.1", "content-type": "application/json",
                           "authorization": f"Bearer {secret}", "content-length": str(len(body))}  # fmt: skip
                req = Request(_Conn(), svc, "POST", "/v1/chat/completions", headers, keep_alive=True,
                              http11=True, max_body=state.max_body)  # fmt: skip
                req.feed(body)
                req.finish()
                resp = await state.handler(req)
                assert isinstance(resp, Response) and resp.status == 200, resp
                resp.encode(True)

            for _ in range(300):
                await one()
            rounds = []
            for _ in range(5):
                t0 = time.thread_time()
                for _ in range(n):
                    await one()
                rounds.append((time.thread_time() - t0) / n * 1e6)
            return statistics.median(rounds)


def _stream_chunks() -> list[ChatChunk]:
    events = payloads.sse_events(payloads.FIXED_STREAM_CHUNKS)
    return [msgspec.json.decode(e[6:-2], type=ChatChunk) for e in events if e.startswith(b"data: {")]


def _plan() -> Any:
    guards = {
        "pii": build_guard("pii", PiiGuardrail(action="redact")),
        "secrets": build_guard("secrets", SecretsGuardrail(action="redact")),
    }
    return build_plan(["pii", "secrets"], guards)


def scanner_cpu(streams: int) -> tuple[float, float]:
    plan = _plan()
    raw = [msgspec.json.encode(c) for c in _stream_chunks()]
    n_chunks = len(raw)
    t0 = time.thread_time()
    for _ in range(streams):
        chunks = [msgspec.json.decode(b, type=ChatChunk) for b in raw]
    decode = time.thread_time() - t0
    t0 = time.thread_time()
    for _ in range(streams):
        chunks = [msgspec.json.decode(b, type=ChatChunk) for b in raw]
        sc = StreamScanner(RequestState(plan), plan.output_text)
        for c in chunks:
            sc.feed(c)
        sc.finish(None)
        sc.verdicts()
    total = time.thread_time() - t0 - decode
    return total / streams * 1e6, total / streams / n_chunks * 1e6


async def _paced(first_in: list[float], mid_word: bool) -> AsyncIterator[ChatChunk]:
    """The bench stream, a chunk every PACE_MS; ``mid_word``: its first chunk ends inside a word."""
    for i, c in enumerate(_stream_chunks()):
        if mid_word and c.choices and c.choices[0].delta.content == "Sure!":
            c.choices[0].delta.content = "Sure"
        if i > 1:
            await asyncio.sleep(PACE_MS / 1000)
        if c.choices and c.choices[0].delta.content and not first_in:
            first_in.append(time.perf_counter())
        yield c


async def hold_back_ms(samples: int, mid_word: bool) -> tuple[float, float]:
    """First content byte out minus first content byte in, for a paced stream through the scanner."""
    plan = _plan()
    delays: list[float] = []
    for _ in range(samples):
        first_in: list[float] = []
        sc = StreamScanner(RequestState(plan), plan.output_text)
        async for c in _paced(first_in, mid_word):
            out = sc.feed(c)
            if any(o.choices and o.choices[0].delta.content for o in out):
                delays.append((time.perf_counter() - first_in[0]) * 1000)
                break
    return statistics.median(delays), max(delays)


async def main(n: int) -> None:
    cells = (
        ("unique 2 KB prompts, nothing to redact, ~280 B answer", CLEAN_PROMPT, payloads.REPLY_TEXT, True),
        (
            "unique 2 KB prompts with 9 emails to redact, ~280 B answer",
            PROMPT_TEXT,
            payloads.REPLY_TEXT,
            True,
        ),
        ("one repeated 2 KB prompt (cache hits), ~280 B answer", CLEAN_PROMPT, payloads.REPLY_TEXT, False),
        ("unique 2 KB prompts with 9 emails, 2 KB answer with 9 emails", PROMPT_TEXT, ANSWER_TEXT, True),
    )
    for label, prompt, answer, unique in cells:
        _ANSWER[0] = _answer_body(answer)
        off = await cpu_per_request(n, guardrails=False, prompt=prompt, unique=unique)
        on = await cpu_per_request(n, guardrails=True, prompt=prompt, unique=unique)
        print(f"non-streamed, {label}: {off:.1f} µs off, {on:.1f} µs on, added {on - off:.1f} µs CPU/request")
    per_stream, per_chunk = scanner_cpu(2000)
    print(
        f"streaming scanner (pii+secrets redact, {payloads.FIXED_STREAM_CHUNKS}-chunk stream): {per_stream:.1f} µs/stream, {per_chunk:.2f} µs/chunk"
    )
    for mid_word, what in ((False, "ends with punctuation ('Sure!')"), (True, "ends inside a word ('Sure')")):
        med, worst = await hold_back_ms(10, mid_word)
        print(
            f"hold-back, stream paced {PACE_MS} ms, first chunk {what}: first content out {med:.2f} ms after it came in (max {worst:.2f} ms)"
        )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 3000))
