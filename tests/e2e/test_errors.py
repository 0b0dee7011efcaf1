"""Every error class the SDK knows, raised from the gateway's own checks and from upstream faults."""

from __future__ import annotations

import httpx2 as httpx
import openai
import pytest

from tests.e2e.gateway import Gateway

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=15)


def test_unknown_key_is_401(gateway: Gateway) -> None:
    c = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="sk-sluice-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        c.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
    assert err.value.body["source"] == "gateway"  # type: ignore[index]


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="model 'nope' does not exist"):
        client.chat.completions.create(model="nope", messages=MSG)  # type: ignore[arg-type]


def test_model_outside_allow_list_is_403_naming_model(gateway: Gateway) -> None:
    restricted = gateway.create_key("eng", "--models", "embed-small")
    c = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=restricted, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="gpt-4o-mini"):
        c.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
    assert [m.id for m in c.models.list()] == ["embed-small"]


def test_team_allow_list_applies(gateway: Gateway) -> None:
    billing = gateway.create_key("billing")
    c = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=billing, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(model="embed-small", messages=MSG)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "needle"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "must be a JSON object"),
        (b'{"model": "gpt-4o-mini"}', "application/json", 400, "messages"),
        (b'{"model": "gpt-4o-mini", "messages": "hi"}', "application/json", 400, "messages"),
        (b'{"model": 3, "messages": []}', "application/json", 400, "model"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}',
            "application/json",
            400,
            "role",
        ),
        (b'{"model": "gpt-4o-mini", "messages": [], "temperature": 9}', "application/json", 400, "messages"),
        (b"model=x", "application/x-www-form-urlencoded", 415, "application/json"),
        (b"", "application/json", 400, "empty"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    gateway: Gateway, key: str, body: bytes, content_type: str, status: int, needle: str
) -> None:
    r = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": content_type},
    )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"]
    assert set(err) >= {"message", "type", "param", "code"}


def test_body_over_limit_is_413(gateway: Gateway, key: str) -> None:
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 300_000}]}
    r = httpx.post(
        gateway.base_url + "/v1/chat/completions", json=big, headers={"authorization": f"Bearer {key}"}
    )
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


def test_unknown_route_and_method_are_json(gateway: Gateway) -> None:
    r = httpx.get(gateway.base_url + "/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(gateway.base_url + "/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()
    assert r.headers["allow"] == "POST"


def test_head_gets_what_get_would_without_the_body(gateway: Gateway) -> None:
    """Load balancers and uptime checks probe with HEAD."""
    got = httpx.get(gateway.base_url + "/healthz")
    head = httpx.head(gateway.base_url + "/healthz")
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["content-type"] == got.headers["content-type"]


@pytest.mark.parametrize(
    ("model", "exc", "status"),
    [
        ("fault-500", openai.InternalServerError, 502),
        ("fault-529", openai.InternalServerError, 503),
        ("fault-400", openai.BadRequestError, 400),
        ("fault-context", openai.BadRequestError, 400),
        ("fault-401", openai.InternalServerError, 502),
        ("fault-malformed", openai.InternalServerError, 502),
        ("down", openai.InternalServerError, 502),
    ],
)
def test_upstream_faults_say_the_provider_failed(
    client: openai.OpenAI, model: str, exc: type, status: int
) -> None:
    with pytest.raises(exc) as err:
        client.chat.completions.create(model=model, messages=MSG)  # type: ignore[arg-type]
    assert err.value.status_code == status  # type: ignore[attr-defined]
    body = err.value.body  # type: ignore[attr-defined]
    assert body["source"] == "provider" and "provider '" in body["message"]
    assert err.value.response.headers["x-sluice-error-source"] == "provider"  # type: ignore[attr-defined]


def test_upstream_429_keeps_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="fault-429", messages=MSG)  # type: ignore[arg-type]
    assert err.value.response.headers["retry-after"] == "1"


def test_slow_first_byte_is_504(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="slow", messages=MSG)  # type: ignore[arg-type]
    assert err.value.status_code == 504


def test_slow_first_byte_stream_is_504(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        list(client.chat.completions.create(model="slow", messages=MSG, stream=True))  # type: ignore[arg-type]
    assert err.value.status_code == 504


def test_fallback_to_next_target_when_first_is_down(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="down-then-up", messages=MSG)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "echo: hi"
    assert raw.headers["x-sluice-attempts"] == "2"


@pytest.mark.parametrize("model", ["fault-drop-stream", "fault-stream-error"])
def test_broken_stream_ends_with_error_not_silence(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "a b c d e"}], stream=True
    )  # type: ignore[arg-type]
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    assert received, "chunks before the break were relayed"
