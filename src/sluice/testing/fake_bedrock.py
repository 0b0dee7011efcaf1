"""A fake Bedrock runtime: Converse (JSON) and ConverseStream (binary event stream), errors with
``x-amzn-ErrorType``, and faults on cue (the shared model-name convention of :mod:`fake_openai`).
It checks that requests are signed (SigV4 ``authorization`` + ``x-amz-date``) or carry a bearer key."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

from sluice.providers.bedrock.eventstream import encode_message
from sluice.testing.loopback import FakeUpstream, new_upstream_id

_enc = msgspec.json.encode


def _err(status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=_enc({"message": message}), content_type="application/json",
        headers={"x-amzn-ErrorType": f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/", **(headers or {})},
    )  # fmt: skip


_FAULTS = {
    "fault-500": lambda: _err(500, "InternalServerException", "The server encountered an internal error."),
    "fault-429": lambda: _err(429, "ThrottlingException", "Too many requests, please wait before trying again.", {"retry-after": "1"}),
    "fault-529": lambda: _err(503, "ServiceUnavailableException", "The service is unavailable."),
    "fault-400": lambda: _err(400, "ValidationException", "temperature: must be between 0 and 1"),
    "fault-401": lambda: _err(403, "AccessDeniedException", "You don't have access to the model."),
    "fault-context": lambda: _err(400, "ValidationException", "Input is too long for requested model."),
}  # fmt: skip


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, _enc(payload))


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            texts = [b["text"] for b in m.get("content", []) if "text" in b]
            if texts:
                return " ".join(texts)
    return ""


def _uses(body: dict[str, Any], model: str) -> list[dict[str, Any]]:
    config = body.get("toolConfig") or {}
    tools = config.get("tools") or []
    if not tools:
        return []
    choice = config.get("toolChoice") or {"auto": {}}
    name = choice["tool"]["name"] if "tool" in choice else tools[0]["toolSpec"]["name"]
    count = 2 if "parallel-tools" in model else 1
    return [{"toolUseId": f"tooluse_{i}", "name": name, "input": {"city": "Paris"}} for i in range(count)]


class FakeBedrock(FakeUpstream):
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/model/{model}/{op}", self._converse)

    async def _converse(self, request: web.Request) -> web.StreamResponse:
        body = await self.read_json(request)
        auth = request.headers.get("authorization", "")
        if not (
            auth.startswith("Bearer ")
            or (auth.startswith("AWS4-HMAC-SHA256 ") and "x-amz-date" in request.headers)
        ):
            return _err(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        model, op = request.match_info["model"], request.match_info["op"]
        if model in _FAULTS:
            return _FAULTS[model]()
        if model == "fault-slow":
            await asyncio.sleep(self.slow_s)
        uses = _uses(body, model)
        text = f"echo: {_last_user_text(body.get('messages', []))}"
        usage = {
            "inputTokens": 12,
            "outputTokens": 6,
            "totalTokens": 21,
            "cacheReadInputTokens": 3,
            "cacheWriteInputTokens": 0,
        }
        stop = "tool_use" if uses else "end_turn"
        up_id = new_upstream_id("")
        if op == "converse":
            if model == "fault-malformed":
                return web.Response(body=b'{"output": {', content_type="application/json")
            content: list[dict[str, Any]] = [{"toolUse": u} for u in uses] or [{"text": text}]
            resp = {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
                    "usage": usage, "metrics": {"latencyMs": 12}}  # fmt: skip
            self._charge(up_id, model, usage)
            return web.Response(
                body=_enc(resp), content_type="application/json", headers={"x-amzn-requestid": up_id}
            )
        return await self._stream(request, model, text, uses, usage, stop, up_id)

    def _charge(self, up_id: str, model: str, usage: dict[str, int], output: int | None = None) -> None:
        read = usage["cacheReadInputTokens"]
        prompt = usage["inputTokens"] + read + usage["cacheWriteInputTokens"]
        billed = usage["outputTokens"] if output is None else output
        written = usage["cacheWriteInputTokens"]
        self.bill.charge(
            up_id, model, prompt, billed, cached=read, cache_write=written, partial=output is not None
        )

    async def _stream(
        self,
        request: web.Request,
        model: str,
        text: str,
        uses: list[dict[str, Any]],
        usage: dict[str, int],
        stop: str,
        up_id: str = "",
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": up_id}
        )
        await resp.prepare(request)
        if model == "fault-malformed":
            await resp.write(b"\x00\x00\x00\x10garbage-frame!!")
            return resp
        await resp.write(_event("messageStart", {"role": "assistant"}))
        if uses:
            for i, use in enumerate(uses):
                start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
                await resp.write(_event("contentBlockStart", {"contentBlockIndex": i, "start": start}))
                for part in ('{"city": ', '"Paris"}'):
                    await resp.write(
                        _event(
                            "contentBlockDelta",
                            {"contentBlockIndex": i, "delta": {"toolUse": {"input": part}}},
                        )
                    )
                await resp.write(_event("contentBlockStop", {"contentBlockIndex": i}))
        else:
            for n, word in enumerate(text.split(" ")):
                if model in ("fault-drop-stream", "fault-stream-error") and n == 2:
                    self._charge(up_id, model, usage, output=n)
                    await asyncio.sleep(0.05)
                    if model == "fault-drop-stream":
                        assert request.transport is not None
                        request.transport.close()
                    else:
                        headers = {":exception-type": "modelStreamErrorException", ":content-type": "application/json",
                                   ":message-type": "exception"}  # fmt: skip
                        await resp.write(encode_message(headers, _enc({"message": "Model stream error"})))
                    return resp
                delta = {"text": word if n == 0 else " " + word}
                await resp.write(_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}))
            await resp.write(_event("contentBlockStop", {"contentBlockIndex": 0}))
        await resp.write(_event("messageStop", {"stopReason": stop}))
        await resp.write(_event("metadata", {"usage": usage, "metrics": {"latencyMs": 12}}))
        self._charge(up_id, model, usage)
        return resp
