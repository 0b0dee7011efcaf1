"""A fake Gemini upstream: ``generateContent`` and ``streamGenerateContent?alt=sse`` (CRLF
framing, no ``[DONE]``, usage on the last fragment, whole function calls with thought
signatures, no call ids), Google's error object, and faults on cue (the shared model-name
convention of :mod:`fake_openai`)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

from sluice.testing.loopback import FakeUpstream, new_upstream_id

_enc = msgspec.json.encode


def _err(code: int, status: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "status": status}}
    return web.Response(status=code, body=_enc(body), content_type="application/json", headers=headers)


_FAULTS = {
    "fault-500": lambda: _err(500, "INTERNAL", "An internal error has occurred."),
    "fault-429": lambda: _err(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", {"retry-after": "1"}),
    "fault-529": lambda: _err(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "fault-400": lambda: _err(400, "INVALID_ARGUMENT", "Invalid value at 'generation_config.temperature'"),
    "fault-401": lambda: _err(403, "PERMISSION_DENIED", "API key not valid. Please pass a valid API key."),
    "fault-context": lambda: _err(400, "INVALID_ARGUMENT", "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."),
}  # fmt: skip


def _last_user_text(contents: list[dict[str, Any]]) -> str:
    for c in reversed(contents):
        if c.get("role") == "user":
            texts = [p["text"] for p in c.get("parts", []) if "text" in p]
            if texts:
                return " ".join(texts)
    return ""


def _calls(body: dict[str, Any], model: str) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if not tools or config.get("mode") == "NONE":
        return []
    decls = tools[0]["functionDeclarations"]
    name = (config.get("allowedFunctionNames") or [decls[0]["name"]])[0]
    count = 2 if "parallel-tools" in model else 1
    return [
        {"functionCall": {"name": name, "args": {"city": "Paris"}}, "thoughtSignature": f"sig-{i}"}
        for i in range(count)
    ]


class FakeGemini(FakeUpstream):
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{call}", self._generate)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await self.read_json(request)
        model, _, op = request.match_info["call"].partition(":")
        if model in _FAULTS:
            return _FAULTS[model]()
        if model == "fault-slow":
            await asyncio.sleep(self.slow_s)
        stream = op == "streamGenerateContent"
        if model == "fault-malformed" and not stream:
            return web.Response(body=b'{"candidates": [', content_type="application/json")
        calls = _calls(body, model)
        text = f"echo: {_last_user_text(body.get('contents', []))}"
        words = sum(len(str(c)) // 8 for c in body.get("contents", [])) + 4
        usage = {"promptTokenCount": words, "candidatesTokenCount": 6, "totalTokenCount": words + 9,
                 "cachedContentTokenCount": 2, "thoughtsTokenCount": 3}  # fmt: skip
        finish = "STOP"
        up_id = new_upstream_id("resp-")
        if not stream:
            parts = calls or [{"text": text}]
            resp = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
                    "usageMetadata": usage, "modelVersion": model, "responseId": up_id}  # fmt: skip
            self._charge(up_id, model, usage)
            return web.Response(body=_enc(resp), content_type="application/json")
        return await self._stream(request, model, text, calls, usage, up_id)

    def _charge(self, up_id: str, model: str, usage: dict[str, int], output: int | None = None) -> None:
        billed = usage["candidatesTokenCount"] + usage["thoughtsTokenCount"] if output is None else output
        self.bill.charge(up_id, model, usage["promptTokenCount"], billed, cached=usage["cachedContentTokenCount"],
                         partial=output is not None)  # fmt: skip

    async def _stream(
        self, request: web.Request, model: str, text: str, calls: list[dict[str, Any]], usage: dict[str, int],
        up_id: str = "resp-1",
    ) -> web.StreamResponse:  # fmt: skip
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)

        async def send(frag: dict[str, Any]) -> None:
            await resp.write(
                b"data: " + _enc({**frag, "modelVersion": model, "responseId": up_id}) + b"\r\n\r\n"
            )

        if model == "fault-malformed":
            await resp.write(b'data: {"candidates": [{"content": \r\n\r\n')
            return resp
        pieces: list[list[dict[str, Any]]] = [[c] for c in calls] or [
            [{"text": w if i == 0 else " " + w}] for i, w in enumerate(text.split(" "))
        ]
        for n, parts in enumerate(pieces):
            if model in ("fault-drop-stream", "fault-stream-error") and n == 2:
                self._charge(up_id, model, usage, output=n)
                await asyncio.sleep(0.05)
                if model == "fault-drop-stream":
                    assert request.transport is not None
                    request.transport.close()
                else:
                    await send(
                        {
                            "error": {
                                "code": 503,
                                "message": "The model is overloaded.",
                                "status": "UNAVAILABLE",
                            }
                        }
                    )
                return resp
            await send({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}]})
        await send({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
                    "usageMetadata": usage})  # fmt: skip
        self._charge(up_id, model, usage)
        return resp
