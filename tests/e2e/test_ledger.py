"""The ledger against every provider's own bill: each fake upstream keeps what it would charge for
every answer it sent, and `sluice reconcile` finds them equal — across all five provider types,
plain and streamed, retries and fallbacks — except the streams cut part-way, which it names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import anthropic
import openai
import pytest

from sluice.pricing import PriceBook, cost, to_nano_usd
from sluice.schema.chat import PromptTokensDetails, Usage
from sluice.testing.fake_anthropic import FakeAnthropic
from sluice.testing.fake_azure import FakeAzure
from sluice.testing.fake_bedrock import FakeBedrock
from sluice.testing.fake_gemini import FakeGemini
from sluice.testing.fake_openai import FakeOpenAI
from sluice.testing.loopback import Bill
from tests.e2e.gateway import Gateway, make_gateway

pytestmark = pytest.mark.e2e

FAKES = {"oai": FakeOpenAI, "az": FakeAzure, "claude": FakeAnthropic, "gem": FakeGemini, "aws": FakeBedrock}
TYPES = {"oai": "openai", "az": "azure", "claude": "anthropic", "gem": "gemini", "aws": "bedrock"}
MODELS = {
    "oai": "gpt-4o-mini", "az": "gpt-4o", "claude": "claude-sonnet-4-5", "gem": "gemini-2.5-flash",
    "aws": "anthropic.claude-3-5-haiku-20241022-v1:0",
}  # fmt: skip


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeOpenAI | FakeAnthropic | FakeGemini | FakeBedrock]]:
    started = {name: cls().start_in_thread() for name, cls in FAKES.items()}
    yield started  # type: ignore[misc]
    for fake in started.values():
        fake.stop_thread()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, FakeOpenAI]) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("ledger")
    up = "api_key: env:SLUICE_TEST_UPSTREAM_KEY"
    f = fakes
    config = f"""
store: {{url: "sqlite:///{workdir}/sluice.db", flush_interval_s: 0.05}}
providers:
  oai: {{type: openai, base_url: "{f['oai'].base_url}", {up}}}
  az: {{type: azure, base_url: "{f['az'].base_url}", api_version: "2024-10-21", {up}}}
  claude: {{type: anthropic, base_url: "{f['claude'].base_url}", {up}}}
  gem: {{type: gemini, base_url: "{f['gem'].base_url}", {up}}}
  aws: {{type: bedrock, base_url: "{f['aws'].base_url}", region: us-east-1, aws_access_key_id: env:SLUICE_TEST_UPSTREAM_KEY, aws_secret_access_key: env:SLUICE_TEST_UPSTREAM_KEY}}
models:
""" + "".join(
        f"  m-{name}: {{targets: [{{provider: {name}, model: \"{model}\"}}]}}\n" for name, model in MODELS.items()
    ) + """
  m-fallback: {targets: [{provider: claude, model: fault-529}, {provider: oai, model: gpt-4o-mini}]}
  m-cut: {targets: [{provider: claude, model: fault-drop-stream}]}
teams: {eng: {}, ops: {}}
prices: {fault-drop-stream: {input_per_mtok: 3, output_per_mtok: 15}}
"""  # fmt: skip
    g = make_gateway(workdir, config)
    g.create_key("eng")
    g.create_key("ops")
    g.start()
    yield g
    g.stop()


def _reconcile(gw: Gateway, provider: str, bill: Bill) -> tuple[int, dict[str, object]]:
    path = gw.workdir / f"bill-{provider}.csv"
    path.write_text(bill.csv())
    out = gw.cli("reconcile", "--config", str(gw.config_path), "--provider", provider, "--from", str(path),
                 "--json", check=False)  # fmt: skip
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def _bill_nusd(bill: Bill, provider_type: str) -> int:
    book = PriceBook.load()
    total = 0
    for line in bill.lines:
        price = book.lookup(line["model"], provider_type)
        assert price is not None, line["model"]
        usage = Usage(prompt_tokens=line["input_tokens"], completion_tokens=line["output_tokens"],
                      prompt_tokens_details=PromptTokensDetails(cached_tokens=line["cached_tokens"],
                                                                cache_write_tokens=line["cache_write_tokens"]))  # fmt: skip
        total += to_nano_usd(cost(usage, price))
    return total


def test_ledger_equals_every_providers_bill(gw: Gateway, fakes: dict[str, FakeOpenAI]) -> None:
    keys = list(gw.keys.values())
    oa = [openai.OpenAI(base_url=gw.base_url + "/v1", api_key=k, max_retries=0) for k in keys]
    an = anthropic.Anthropic(base_url=gw.base_url, api_key=keys[1], max_retries=0)
    for i in range(3):
        for name in MODELS:
            client = oa[i % 2]
            client.chat.completions.create(
                model=f"m-{name}", messages=[{"role": "user", "content": f"hi {i} {name}"}]
            )
            for _ in client.chat.completions.create(
                model=f"m-{name}", messages=[{"role": "user", "content": f"stream {i} {name}"}], stream=True
            ):
                pass
        an.messages.create(
            model="m-claude", max_tokens=50, messages=[{"role": "user", "content": f"anthropic {i}"}]
        )
        # The first target is overloaded (not billed), the fallback answers (billed on oai).
        oa[0].chat.completions.create(model="m-fallback", messages=[{"role": "user", "content": f"fb {i}"}])
    totals = {}
    for name, fake in fakes.items():
        code, report = _reconcile(gw, name, fake.bill)
        assert code == 0 and report["ok"], (name, report)
        groups = report["groups"]
        assert sum(g["ledger"]["requests"] for g in groups) == len(fake.bill.lines) > 0  # type: ignore[index, union-attr]
        totals[name] = sum(Decimal(str(g["ledger"]["cost_usd"])) for g in groups)  # type: ignore[index, union-attr]
        assert totals[name] == Decimal(_bill_nusd(fake.bill, TYPES[name])).scaleb(-9), name
    # Both teams' spend is in the per-team split.
    teams = {t for g in _reconcile(gw, "oai", fakes["oai"].bill)[1]["groups"] for t in g["ledger_by_team"]}  # type: ignore[union-attr, index]
    assert teams == {"eng", "ops"}


def test_a_cut_stream_is_an_estimate_that_reconcile_names(gw: Gateway, fakes: dict[str, FakeOpenAI]) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=next(iter(gw.keys.values())), max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model="m-cut", messages=[{"role": "user", "content": "a long answer please"}], stream=True
        ):
            pass
    bill = Bill()
    bill.lines = [line for line in fakes["claude"].bill.lines if line["partial"]]
    code, report = _reconcile(gw, "claude", bill)
    assert code == 1 and not report["ok"]
    explained = [e for g in report["groups"] for e in g["explain"]]  # type: ignore[union-attr, index]
    assert any(e.endswith("(estimated)") for e in explained), report
    assert Decimal(str(report["estimated_usd"])) > 0
