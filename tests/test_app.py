"""app: the demo upstream is loaded only when a policy asks for it, and says what it needs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from sluice.app import dispatcher, running
from sluice.boot import start_demo
from sluice.config.loader import parse_config
from sluice.errors import ServiceUnavailable
from sluice.server.wire import Request, Response
from sluice.store.keys import new_key


async def test_the_demo_needs_aiohttp_and_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith(("sluice.testing", "aiohttp"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if it were not installed
    with pytest.raises(ServiceUnavailable) as err:
        await start_demo()
    assert "aiohttp is not installed" in err.value.message
    assert "pip install 'sluice-gateway[demo]'" in err.value.message


async def test_builtin_demo_is_started_and_used(tmp_path: Path) -> None:
    config = parse_config(
        yaml.safe_load(f"""
store: {{url: "sqlite:///{tmp_path}/t.db"}}
providers: {{demo: {{type: openai, base_url: "builtin:demo"}}}}
models: {{demo-chat: {{targets: [{{provider: demo, model: demo-chat}}]}}}}
teams: {{demo: {{}}}}
""")
    )
    async with running(config) as svc:
        secret, record = new_key(svc.hmac_key, team="demo")
        await svc.store.create_key(record)
        await svc.keys.reload(force=True)
        body = b'{"model": "demo-chat", "messages": [{"role": "user", "content": "hello demo"}]}'
        headers = {"host": "t", "content-type": "application/json", "authorization": f"Bearer {secret}",
                   "content-length": str(len(body))}  # fmt: skip
        request = Request(_Conn(), svc, "POST", "/v1/chat/completions", headers, keep_alive=True, http11=True,
                          max_body=1 << 20)  # fmt: skip
        request.feed(body)
        request.finish()
        resp = await dispatcher()(request)
    assert isinstance(resp, Response) and resp.status == 200, resp
    assert (
        json.loads(resp.body)["choices"][0]["message"]["content"] == "[sluice demo upstream] echo: hello demo"
    )


class _Conn:
    closed = False

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass
