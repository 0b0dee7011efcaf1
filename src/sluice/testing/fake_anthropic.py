"""A fake Anthropic Messages API upstream: exact non-streamed and named-event streamed wire
format, tool use, cache usage, and faults on cue — the same model-name convention as
:mod:`sluice.testing.fake_openai` (``fault-500``, ``fault-429``, ``fault-529``, ``fault-400``,
``fault-401``, ``fault-context``, ``fault-malformed``, ``fault-drop-stream``, ``fault-stream-error``,
``fault-slow``; ``parallel-tools`` for two tool calls). Requests are kept in ``.requests``.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import msgspec
from aiohttp import web

from sluice.testing.loopback import FakeUpstream, new_upstream_id

_enc = msgspec.json.encode


def _err(status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_fake"}
    return web.Response(status=status, body=_enc(body), content_type="application/json", headers=headers)


_FAULTS = {
    "fault-500": lambda: _err(500, "api_error", "Internal server error"),
    "fault-429": lambda: _err(429, "rate_limit_error", "Number of requests has exceeded your rate limit", {"retry-after": "1"}),
    "fault-529": lambda: _err(529, "overloaded_error", "Overloaded"),
    "fault-400": lambda: _err(400, "invalid_request_error", "temperature: range: 0..1"),
    "fault-401": lambda: _err(401, "authentication_error", "invalid x-api-key"),
    "fault-context": lambda: _err(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
}  # fmt: skip


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            return content
        texts = [b.get("text", "") for b in content or [] if b.get("type") == "text"]
        if texts:
            return " ".join(texts)
    return ""


def _tool_uses(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return []
    name = choice.get("name") if choice.get("type") == "tool" else tools[0]["name"]
    count = 2 if "parallel-tools" in str(body.get("model")) else 1
    return [
        {"type": "tool_use", "id": f"toolu_{i}_{name}", "name": name, "input": {"city": "Paris"}}
        for i in range(count)
    ]


def _usage(body: dict[str, Any], output: int) -> dict[str, int]:
    words = sum(len(str(m.get("content")).split()) for m in body.get("messages", []))
    return {
        "input_tokens": words + 3,
        "output_tokens": output,
        "cache_creation_input_tokens": 2,
        "cache_read_input_tokens": 5,
    }


class FakeAnthropic(FakeUpstream):
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self.read_json(request)
        model = str(body.get("model", ""))
        if model in _FAULTS:
            return _FAULTS[model]()
        if model == "fault-slow":
            await asyncio.sleep(self.slow_s)
        if model == "fault-malformed" and not body.get("stream"):
            return web.Response(body=b'{"type": "message", "content": [', content_type="application/json")
        uses = _tool_uses(body)
        text = f"echo: {_last_user_text(body.get('messages', []))}"
        content: list[dict[str, Any]] = uses if uses else [{"type": "text", "text": text}]
        msg_id = "msg_" + hashlib.sha256(_enc(body)).hexdigest()[:20]
        usage = _usage(body, 8 * len(uses) if uses else len(text.split()))
        stop = "tool_use" if uses else "end_turn"
        up_id = new_upstream_id("req_")
        if body.get("stream"):
            return await self._stream(request, body, msg_id, content, usage, stop, up_id)
        resp = {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "stop_sequence": None, "usage": usage}  # fmt: skip
        self._charge(up_id, model, usage, usage["output_tokens"])
        return web.Response(body=_enc(resp), content_type="application/json", headers={"request-id": up_id})

    def _charge(
        self, up_id: str, model: str, usage: dict[str, int], output: int, partial: bool = False
    ) -> None:
        read = usage["cache_read_input_tokens"]
        prompt = usage["input_tokens"] + usage["cache_creation_input_tokens"] + read
        written = usage["cache_creation_input_tokens"]
        self.bill.charge(up_id, model, prompt, output, cached=read, cache_write=written, partial=partial)

    async def _stream(
        self, request: web.Request, body: dict[str, Any], msg_id: str, content: list[dict[str, Any]],
        usage: dict[str, int], stop: str, up_id: str = "",
    ) -> web.StreamResponse:  # fmt: skip
        resp = web.StreamResponse(
            headers={"content-type": "text/event-stream; charset=utf-8", "request-id": up_id}
        )
        await resp.prepare(request)
        model = str(body.get("model"))

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: ".encode() + _enc(data) + b"\n\n")

        if model == "fault-malformed":
            await resp.write(b'event: message_start\ndata: {"type": "message_start", "message": \n\n')
            return resp
        start_usage = {**usage, "output_tokens": 1}
        await send("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}})  # fmt: skip
        await send("ping", {"type": "ping"})
        sent = 0
        for index, block in enumerate(content):
            if block["type"] == "text":
                await send(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                for i, word in enumerate(block["text"].split(" ")):
                    if model in ("fault-drop-stream", "fault-stream-error") and sent == 2:
                        self._charge(up_id, model, usage, sent, partial=True)
                        await asyncio.sleep(0.05)
                        if model == "fault-drop-stream":
                            assert request.transport is not None
                            request.transport.close()
                        else:
                            await send(
                                "error",
                                {
                                    "type": "error",
                                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                                },
                            )
                        return resp
                    delta = {"type": "text_delta", "text": word if i == 0 else " " + word}
                    await send(
                        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                    )
                    sent += 1
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                await send(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
                for part in ('{"city": ', '"Paris"}'):
                    delta = {"type": "input_json_delta", "partial_json": part}
                    await send(
                        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                    )
            await send("content_block_stop", {"type": "content_block_stop", "index": index})
        await send("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": usage["output_tokens"]}})  # fmt: skip
        await send("message_stop", {"type": "message_stop"})
        self._charge(up_id, model, usage, usage["output_tokens"])
        return resp
