from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import Gateway, make_gateway, standard_config


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(slow_s=2.0) as fake:
        yield fake


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeOpenAI) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("gateway")
    gw = make_gateway(workdir, standard_config(workdir, fake_upstream.base_url))
    gw.create_key("eng")
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def key(gateway: Gateway) -> str:
    return next(iter(gateway.keys.values()))
