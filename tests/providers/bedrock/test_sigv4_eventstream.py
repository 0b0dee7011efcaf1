"""SigV4 and the event-stream codec, cross-checked against botocore (a dev dependency only)."""

from __future__ import annotations

import datetime
import json

import msgspec
import pytest

from sluice.providers.bedrock.eventstream import EventStreamDecoder, EventStreamError, encode_message
from sluice.providers.bedrock.sigv4 import AwsCredentials, sign

botocore_auth = pytest.importorskip("botocore.auth")
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from botocore.eventstream import EventStreamBuffer  # noqa: E402

URL = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
NOW = 1795520000.0


@pytest.mark.parametrize("token", [None, "session-token-xyz"])
def test_signature_matches_botocore(monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    body = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'
    creds = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ours = sign("POST", URL, {"content-type": "application/json"}, body, creds, "us-east-1", NOW)

    frozen = datetime.datetime.fromtimestamp(NOW, datetime.UTC)
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda *a, **k: frozen)
    req = AWSRequest(method="POST", url=URL, data=body, headers={"Content-Type": "application/json"})
    botocore_auth.SigV4Auth(
        Credentials(creds.access_key_id, creds.secret_access_key, token), "bedrock", "us-east-1"
    ).add_auth(req)
    assert ours["authorization"] == req.headers["Authorization"]
    assert ours["x-amz-date"] == req.headers["X-Amz-Date"]


def test_event_stream_round_trip_any_split_and_botocore_agrees() -> None:
    frames = [({":event-type": "contentBlockDelta", ":message-type": "event"}, json.dumps({"delta": {"text": str(i)}}).encode())
              for i in range(5)]  # fmt: skip
    data = b"".join(encode_message(h, p) for h, p in frames)
    for step in (1, 3, 17, len(data)):
        decoder = EventStreamDecoder()
        got = [f for i in range(0, len(data), step) for f in decoder.feed(data[i : i + step])]
        assert [(f.headers, f.payload) for f in got] == frames
    buf = EventStreamBuffer()
    buf.add_data(data)
    assert [m.payload for m in buf] == [p for _, p in frames]


def test_corrupt_frames_are_rejected() -> None:
    good = encode_message({":event-type": "messageStop"}, msgspec.json.encode({"stopReason": "end_turn"}))
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(b"\x00\x00\x00\x10garbage-frame!!")


def test_adapter_signs_with_configured_keys_and_translates_converse() -> None:
    from sluice.config.model import ProviderConfig
    from sluice.config.secret import Secret
    from sluice.providers.base import Target
    from sluice.providers.bedrock import BedrockAdapter
    from sluice.schema.openai import parse_chat_request

    cfg = ProviderConfig(type="bedrock", region="eu-west-1", aws_access_key_id=Secret("AKID", "env:A"),
                         aws_secret_access_key=Secret("SECRET", "env:B"))  # fmt: skip
    adapter = BedrockAdapter("b", cfg, clock=lambda: NOW)
    req = parse_chat_request(msgspec.json.encode({
        "model": "m", "max_tokens": 10, "messages": [
            {"role": "system", "content": "terse"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "21C"}],
        "tools": [{"type": "function", "function": {"name": "w"}}], "tool_choice": "none"}))  # fmt: skip
    up = adapter.build_request(req, Target("b", "anthropic.claude-3-5-haiku-20241022-v1:0"))
    assert (
        up.url
        == "https://bedrock-runtime.eu-west-1.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    )
    assert up.headers["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKID/20261124/eu-west-1/bedrock/aws4_request"
    )
    body = msgspec.json.decode(up.body)
    assert body["system"] == [{"text": "terse"}]
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [{"toolUse": {"toolUseId": "t1", "name": "w", "input": {}}}],
    }
    assert body["messages"][2]["content"][0]["toolResult"]["toolUseId"] == "t1"
    assert "toolChoice" not in body["toolConfig"], (
        "no 'none' on Bedrock: tools kept for the history, no choice"
    )
