"""Token counting: exact for OpenAI encodings, offline, and cheap."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import tiktoken

from sluice.limits.tokens import TokenCounter
from sluice.schema.chat import (
    ChatRequest,
    FunctionCall,
    FunctionDef,
    ImagePart,
    ImageUrl,
    Message,
    TextPart,
    Tool,
    ToolCall,
)

OFFLINE = textwrap.dedent(
    """
    import hashlib, os, socket, sys
    def refuse(*a, **k):
        raise RuntimeError("network use attempted")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    import tiktoken.load
    tiktoken.load.read_file = refuse      # the download path; the cache path does not use it
    from sluice.limits.tokens import TokenCounter
    from sluice.schema.chat import ChatRequest, Message
    c = TokenCounter()
    c.preload()
    n = c.count_chat(ChatRequest(model="gpt-4o", messages=[Message(role="user", content="Hello, how are you today?")]))
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    name = hashlib.sha1(url.encode()).hexdigest()
    assert os.path.exists(os.path.join(os.environ["TIKTOKEN_CACHE_DIR"], name))
    print(n.tokens, n.exact, n.encoding)
    """
)


def test_offline_with_shipped_files(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    for _ in range(2):  # cold (decompress) and warm (reuse) cache
        out = subprocess.run(
            [sys.executable, "-c", OFFLINE], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        assert out.stdout.split() == ["14", "True", "o200k_base"]


def counter() -> TokenCounter:
    c = TokenCounter()
    c.preload()
    return c


def test_openai_message_accounting():
    c = counter()
    enc = tiktoken.get_encoding("o200k_base")
    msgs = [
        Message(role="system", content="You are terse."),
        Message(role="user", content="Summarise: the quick brown fox jumps over the lazy dog.", name="ann"),
    ]
    expected = 3 + sum(4 + len(enc.encode(m.text())) for m in msgs) + 1 + len(enc.encode("ann"))
    got = c.count_chat(ChatRequest(model="gpt-4o-mini-2024-07-18", messages=msgs))
    assert (got.tokens, got.exact, got.encoding) == (expected, True, "o200k_base")


def test_encodings_by_model():
    c = counter()
    assert c.encoding_for("gpt-4") == ("cl100k_base", True)
    assert c.encoding_for("gpt-3.5-turbo-0125") == ("cl100k_base", True)
    assert c.encoding_for("openai/gpt-4.1-mini") == ("o200k_base", True)
    assert c.encoding_for("o3-mini") == ("o200k_base", True)
    assert c.encoding_for("claude-sonnet-4-5") == ("o200k_base", False)
    assert c.encoding_for("text-davinci-003") == ("o200k_base", False)  # p50k is not shipped


def test_estimates_are_labelled():
    c = counter()
    parts = [TextPart(text="what is this?"), ImagePart(image_url=ImageUrl(url="data:x", detail="low"))]
    n = c.count_chat(ChatRequest(model="gpt-4o", messages=[Message(role="user", content=parts)]))
    assert not n.exact and n.tokens > 85
    tools = [Tool(function=FunctionDef(name="get_weather", parameters={"type": "object"}))]
    call = ToolCall(id="c1", function=FunctionCall(name="get_weather", arguments='{"city":"Paris"}'))
    msgs = [Message(role="user", content="hi"), Message(role="assistant", tool_calls=[call])]
    n = c.count_chat(ChatRequest(model="gpt-4o", messages=msgs, tools=tools))
    assert not n.exact and n.tokens > 20
    assert not c.count_chat(ChatRequest(model="gemini-2.5-pro", messages=msgs[:1])).exact


async def test_long_prompt_counted_off_loop():
    c = counter()
    text = "word " * 30_000
    req = ChatRequest(model="gpt-4o", messages=[Message(role="user", content=text)])
    assert (await c.count_chat_async(req)).tokens == c.count_chat(req).tokens
    assert c.count_inputs(["a b", "c"], "text-embedding-3-small").tokens == 3
