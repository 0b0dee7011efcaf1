from __future__ import annotations

import msgspec
import pytest

from sluice.errors import BadRequest, ProviderError, RateLimited
from sluice.schema.chat import ImagePart, TextPart
from sluice.schema.openai import error_body, parse_chat_request, parse_embedding_request


def test_parse_keeps_unknown_fields_for_passthrough() -> None:
    req = parse_chat_request(
        b'{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"},'
        b'{"type":"image_url","image_url":{"url":"data:x"}}]}],"verbosity":"low","stream":true}'
    )
    assert req.extra_body == {"verbosity": "low"}
    assert req.stream is True
    parts = req.messages[0].content
    assert isinstance(parts, list) and isinstance(parts[0], TextPart) and isinstance(parts[1], ImagePart)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model":"m","messages":[{"role":"user","content":5}]}', "messages[0].content"),
        (b'{"model":"m","messages":[],"n":0}', "messages"),
        (b'{"model":"m","messages":[{"role":"tool","content":"x"}]}', "messages[0]"),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}', "max_tokens"),
        (b'{"model":"","messages":[{"role":"user","content":"x"}]}', "model"),
    ],
)
def test_invalid_chat_names_the_field(body: bytes, param: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_chat_request(body)
    assert err.value.param == param


@pytest.mark.parametrize(
    "value",
    ["a", ["a", "b"], [1, 2, 3], [[1, 2], [3]]],
)
def test_embedding_input_forms(value: object) -> None:
    req = parse_embedding_request(msgspec.json.encode({"model": "e", "input": value}))
    assert req.input == value


@pytest.mark.parametrize("value", [[], [1, "a"], [[]], [True], 3])
def test_embedding_input_rejected(value: object) -> None:
    with pytest.raises(BadRequest):
        parse_embedding_request(msgspec.json.encode({"model": "e", "input": value}))


def test_error_bodies_have_openai_shape() -> None:
    body = msgspec.json.decode(error_body(RateLimited("team x: 10 requests/min", retry_after=3)))
    assert body == {
        "error": {"message": "team x: 10 requests/min", "type": "rate_limit_error", "param": None,
                  "code": "rate_limit_exceeded", "source": "gateway"}
    }  # fmt: skip
    perr = msgspec.json.decode(
        error_body(ProviderError("server", "boom", provider="up", upstream_status=500))
    )
    assert perr["error"]["source"] == "provider" and perr["error"]["provider"] == "up"
    assert perr["error"]["message"] == "provider 'up' failed: boom"
