"""A fake OpenAI-compatible upstream: the exact wire format of Chat Completions (plain and
streamed, tools, usage), Embeddings and Models — and faults on cue.

The upstream *model name* selects the behaviour (the convention shared by every fake):
a normal name answers ``echo: <last user text>`` (streamed one word per chunk); with tools and a
tool_choice other than none it calls the named or first tool with ``{"city": "Paris"}`` (two calls
if the name contains ``parallel-tools``). Faults: ``fault-500``, ``fault-429`` (retry-after: 1),
``fault-529``, ``fault-400``, ``fault-401``, ``fault-context``, ``fault-malformed``,
``fault-drop-stream``, ``fault-stream-error``, ``fault-slow`` (first byte after ``slow_s``).
A name containing ``split-echo`` answers the last user text without the ``echo:`` prefix, streamed
in the pieces that ``|`` separates in it (``123-|45-|6789``; the ``|`` are dropped); with tools,
a name containing ``args-echo`` calls the tool with ``{"text": <that text>}`` the same way.
Scripted sequences (``fake.script(model, [500, "429:2", "ok"])``, or ``POST /_script``) take
precedence while they last: see :mod:`sluice.testing.scripted`.
Every request is kept in ``.requests`` (the last 1,000, served at ``GET /_requests``) unless
``keep_requests=False``: the gateway's built-in demo upstream keeps nothing and serves neither
``/_requests`` nor ``/_script`` (it runs inside the gateway, unauthenticated).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import msgspec
from aiohttp import web

from sluice.schema.embeddings import floats_to_base64
from sluice.testing.loopback import Bill, LoopbackServer, new_upstream_id
from sluice.testing.scripted import Scripts, Step, behaviour, error_status

_enc = msgspec.json.encode


def _err(
    status: int, message: str, etype: str, code: str | None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
    return web.Response(status=status, body=_enc(body), content_type="application/json", headers=headers)


_FAULTS = {
    "fault-500": lambda: _err(500, "The server had an error while processing your request.", "server_error", None),
    "fault-429": lambda: _err(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", {"retry-after": "1"}),
    "fault-529": lambda: _err(529, "The engine is currently overloaded.", "server_error", "overloaded"),
    "fault-400": lambda: _err(400, "Invalid value for 'temperature'.", "invalid_request_error", "invalid_value"),
    "fault-401": lambda: _err(401, "Incorrect API key provided: sk-up****1234.", "invalid_request_error", "invalid_api_key"),
    "fault-context": lambda: _err(
        400, "This model's maximum context length is 128000 tokens.", "invalid_request_error", "context_length_exceeded"
    ),
}  # fmt: skip


def _scripted_error(status: int, retry_after: float | None) -> web.Response:
    if retry_after is not None:
        headers = {"retry-after": f"{retry_after:g}"}
        return _err(status, "Rate limit reached", "requests", "rate_limit_exceeded", headers)
    etype = "server_error" if status >= 500 else "invalid_request_error"
    return _err(status, f"scripted {status}", etype, None)


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""


def _count_words(messages: list[dict[str, Any]]) -> int:
    total = 0
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            total += len(c.split())
        elif isinstance(c, list):
            total += sum(len(p.get("text", "").split()) for p in c if isinstance(p, dict))
    return total + 3 * len(messages)


def _tool_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return []
    name = tools[0]["function"]["name"]
    if isinstance(choice, dict):
        name = choice["function"]["name"]
    count = 2 if "parallel-tools" in str(body.get("model")) else 1
    args = '{"city": "Paris"}'
    if "args-echo" in str(body.get("model")):
        args = '{"text": "' + _last_user_text(body.get("messages", [])) + '"}'
    return [{"id": f"call_{i}_{name}", "type": "function", "function": {"name": name, "arguments": args}}
            for i in range(count)]  # fmt: skip


def _pieces(text: str, model: str) -> list[str]:
    """Stream pieces: ``|``-separated for ``split-echo`` models, else one word per chunk."""
    if "split-echo" in model or "args-echo" in model:
        return [p for p in text.split("|") if p]
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class FakeOpenAI(LoopbackServer):
    def __init__(
        self, *, label: str = "", slow_s: float = 2.0, stall_s: float = 30.0, keep_requests: bool = True
    ) -> None:
        super().__init__(self._app, "/v1")
        self.keep_requests = keep_requests
        self.label = label
        self.slow_s = slow_s
        self.stall_s = stall_s
        self.scripts = Scripts()
        self.requests: list[dict[str, Any]] = []
        self.bill = Bill(keep=keep_requests)
        self.prompt_filter_chunk = False

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        if self.keep_requests:
            app.router.add_get("/_requests", self._recorded)
            app.router.add_get("/_bill", self.bill.serve)
            app.router.add_post("/_script", self._set_script)
        return app

    def script(self, model: str, steps: list[Step]) -> None:
        """The next requests for ``model`` answer with these steps, in order."""
        self.scripts.set(model, steps)

    def count(self, model: str) -> int:
        """Requests received for an upstream model name."""
        bodies = [r["body"] for r in self.requests]
        return sum(1 for b in bodies if isinstance(b, dict) and b.get("model") == model)

    async def _set_script(self, request: web.Request) -> web.Response:
        data = msgspec.json.decode(await request.read())
        self.script(str(data["model"]), list(data["steps"]))
        return web.json_response({"ok": True})

    def _record(self, request: web.Request, body: Any) -> None:
        if not self.keep_requests:
            return
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        del self.requests[:-1000]

    async def _recorded(self, request: web.Request) -> web.Response:
        return web.Response(body=_enc(self.requests), content_type="application/json")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "demo", "object": "model", "created": 0, "owned_by": "demo"}]}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = msgspec.json.decode(await request.read())
        self._record(request, body)
        return await self._answer(request, body)

    async def _answer(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        model = str(body.get("model", ""))
        fault = behaviour(self.scripts.next(model), model)
        if fault in _FAULTS:
            return _FAULTS[fault]()
        scripted = error_status(fault)
        if scripted is not None:
            return _scripted_error(*scripted)
        if fault == "reset":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if fault == "fault-slow":
            await asyncio.sleep(self.slow_s)
        if fault in ("fault-malformed", "truncate") and not body.get("stream"):
            return web.Response(body=b'{"id": "chatcmpl-x", "choices": [', content_type="application/json")
        text = f"{self.label}echo: {_last_user_text(body.get('messages', []))}"
        if "split-echo" in model:
            text = _last_user_text(body.get("messages", []))
        calls = _tool_calls(body)
        prompt = _count_words(body.get("messages", []))
        completion = len(text.split()) if not calls else 8 * len(calls)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                 "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}  # fmt: skip
        rid = "chatcmpl-" + hashlib.sha256(_enc(body)).hexdigest()[:20]
        up_id = new_upstream_id("req-up-")
        if body.get("stream"):
            return await self._stream(request, body, rid, text, calls, usage, fault, up_id)
        text = text.replace("|", "") if "split-echo" in model else text
        for call in calls:
            call["function"]["arguments"] = call["function"]["arguments"].replace("|", "")
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if calls else text,
            "refusal": None,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = calls
        resp = {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": usage, "service_tier": "default", "system_fingerprint": None}  # fmt: skip
        self.bill.charge(up_id, model, prompt, completion)
        return web.Response(body=_enc(resp), content_type="application/json", headers={"x-request-id": up_id})

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        rid: str,
        text: str,
        calls: list[dict[str, Any]],
        usage: dict[str, Any],
        fault: str = "",
        up_id: str = "",
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"content-type": "text/event-stream; charset=utf-8", "x-request-id": up_id}
        )
        await resp.prepare(request)
        model = str(body.get("model"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                "system_fingerprint": None}  # fmt: skip

        def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
            chunk = {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                chunk["usage"] = None
            return b"data: " + _enc(chunk) + b"\n\n"

        if fault == "fault-malformed":
            await resp.write(b'data: {"id": "chatcmpl-x", "choices": [{"delta": \n\n')
            return resp
        if fault == "slow-first-token":
            await asyncio.sleep(self.slow_s)
        if self.prompt_filter_chunk:  # Azure opens streams with an empty-choices filter report
            head = {"id": "", "object": "", "created": 0, "model": "", "choices": [],
                    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}  # fmt: skip
            await resp.write(b"data: " + _enc(head) + b"\n\n")
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        if calls:
            for i, call in enumerate(calls):
                deltas.append(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
                args = call["function"]["arguments"]
                parts = _pieces(args, model) if "args-echo" in model else ['{"city": ', '"Paris"}']
                for part in parts:
                    deltas.append({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
        else:
            deltas.extend({"content": piece} for piece in _pieces(text, model))
        # Billed for what was generated: all of it, or up to a cut (the content sent so far).
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
        for n, delta in enumerate(deltas):
            if n == 2 and fault in ("fault-drop-stream", "fault-stream-error", "truncate", "stall"):
                if fault != "stall":  # a stall goes on to the end
                    self.bill.charge(up_id, model, prompt, 1 if not calls else 0, partial=True)
                await asyncio.sleep(0.05)  # let the first chunks reach the caller on their own
                if fault == "truncate":
                    return resp  # a clean end of body, but no finish_reason and no [DONE]
                if fault == "stall":
                    await asyncio.sleep(self.stall_s)
            if fault == "fault-drop-stream" and n == 2:
                assert request.transport is not None
                request.transport.close()
                return resp
            if fault == "fault-stream-error" and n == 2:
                err = {
                    "error": {"message": "The server had an error while streaming.", "type": "server_error"}
                }
                await resp.write(b"data: " + _enc(err) + b"\n\n")
                return resp
            await resp.write(frame(delta))
        await resp.write(frame({}, "tool_calls" if calls else "stop"))
        self.bill.charge(up_id, model, prompt, completion)
        if include_usage:
            await resp.write(b"data: " + _enc({**base, "choices": [], "usage": usage}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read())
        self._record(request, body)
        model = str(body.get("model", ""))
        if model in _FAULTS:
            return _FAULTS[model]()
        inputs = body.get("input")
        items = (
            [inputs]
            if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int))
            else inputs
        )
        dims = int(body.get("dimensions") or 8)
        data = []
        tokens = 0
        for i, item in enumerate(items or []):
            seed = hashlib.sha256(_enc(item)).digest()
            vec = [((seed[j % 32] / 255.0) - 0.5) for j in range(dims)]
            tokens += len(item.split()) if isinstance(item, str) else len(item)
            emb: Any = floats_to_base64(vec) if body.get("encoding_format") == "base64" else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        resp = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return web.Response(body=_enc(resp), content_type="application/json")
