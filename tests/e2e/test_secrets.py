"""The provider key never leaves the gateway; the caller's key is never forwarded upstream."""

from __future__ import annotations

import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import ADMIN_KEY, UPSTREAM_KEY, Gateway

pytestmark = pytest.mark.e2e


def test_keys_stay_where_they_belong(gateway: Gateway, key: str, fake_upstream: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    seen: list[str] = []
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    seen += [raw.http_response.text, str(dict(raw.headers))]
    for model in ("fault-401", "fault-500", "fault-400", "down"):
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        seen += [err.value.response.text, str(dict(err.value.response.headers)), str(err.value)]
    for text in seen:
        assert UPSTREAM_KEY not in text

    # Upstream saw the provider key, never the caller's gateway key.
    for req in fake_upstream.requests:
        headers = {k.lower(): v for k, v in req["headers"].items()}
        assert key not in str(headers)
        assert headers.get("authorization") == f"Bearer {UPSTREAM_KEY}"

    import time

    time.sleep(0.3)  # let the record writer flush
    db_bytes = b"".join(p.read_bytes() for p in gateway.workdir.glob("sluice.db*"))
    log_text = gateway.log_path.read_text()
    for secret in (UPSTREAM_KEY, key, ADMIN_KEY):
        assert secret.encode() not in db_bytes
        assert secret not in log_text
