"""Start-up of the metrics for one policy: the label vocabulary, the values read at scrape time,
and the publisher that shares this worker's counts. The objects observed are passed in as
protocols, so telemetry imports nothing above it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Mapping
from typing import Protocol

from opentelemetry.sdk.trace.export import SpanExporter

from sluice.config.model import Config, ProviderConfig
from sluice.config.telemetry import TelemetryConfig, resolve, traces_url
from sluice.telemetry.labels import Vocabulary
from sluice.telemetry.metrics import METRICS, bind
from sluice.telemetry.prom import Labels
from sluice.telemetry.tracing import TRACING, CompactOTLPSpanExporter
from sluice.telemetry.workers import SnapshotPublisher

BREAKER_STATES = ("closed", "half_open", "open")
#: One export call (in the SDK's thread) gives up after this long: a hung collector delays
#: spans, never requests. Also bounds the flush at shutdown.
EXPORT_TIMEOUT_S = 3.0
#: Langfuse's OTLP/HTTP traces endpoint, under its host.
LANGFUSE_OTLP_PATH = "/api/public/otel/v1/traces"


class Backlog(Protocol):
    """The request-log writer, as the metrics read it."""

    @property
    def pending(self) -> int: ...
    @property
    def spooled(self) -> int: ...
    @property
    def written(self) -> int: ...


class Breakers(Protocol):
    """Routing's health board: one view per target with ``provider``, ``model``, ``state``."""

    def view(self) -> list[dict[str, object]]: ...


def vocabulary(config: Config, providers: Mapping[str, ProviderConfig]) -> Vocabulary:
    return Vocabulary.of(
        teams=config.teams, routes=(r.name for r in config.routes), models=config.models,
        served_models=(t.model for m in config.models.values() for t in m.targets), providers=providers,
        guardrails=config.guardrails,
    )  # fmt: skip


def bind_policy_metrics(
    config: Config, providers: Mapping[str, ProviderConfig], *, writer: Backlog, health: Breakers
) -> None:
    """This policy's label vocabulary and the values read at scrape time (a reload binds again)."""
    vocab = vocabulary(config, providers)
    bind(vocab)

    def breaker_states() -> Iterable[tuple[Labels, float]]:
        for v in health.view():
            p, m, state = vocab.provider(str(v["provider"])), vocab.served(str(v["model"])), v["state"]
            for s in BREAKER_STATES:
                yield (p, m, s), 1.0 if s == state else 0.0

    METRICS.watch("sluice_breaker_state", "1 for the state each target's circuit breaker is in.",
                  breaker_states, ("provider", "model", "state"), merge="max")  # fmt: skip
    METRICS.watch("sluice_request_log_queue_depth", "Request records not yet written to the store.",
                  lambda: [((), float(writer.pending))])  # fmt: skip
    METRICS.watch("sluice_request_log_spooled_records_total", "Request records spooled to disk while the store was slow or down.",
                  lambda: [((), float(writer.spooled))], counter=True)  # fmt: skip
    METRICS.watch("sluice_request_log_written_records_total", "Request records written to the store.",
                  lambda: [((), float(writer.written))], counter=True)  # fmt: skip


def start_metrics() -> SnapshotPublisher:
    """The publisher that shares this worker's counts with the others (``--workers N``)."""
    publisher = SnapshotPublisher.from_env(METRICS.registry)
    publisher.start()
    return publisher


def exporters(telemetry: TelemetryConfig) -> list[tuple[str, SpanExporter]]:
    out: list[tuple[str, SpanExporter]] = []
    otlp = telemetry.otlp
    if otlp is not None:
        url = traces_url(resolve(otlp.endpoint, "$.telemetry.otlp.endpoint"))
        headers = {k: resolve(v, f"$.telemetry.otlp.headers.{k}") for k, v in otlp.headers.items()}
        out.append(
            (
                "the OTLP collector",
                CompactOTLPSpanExporter(endpoint=url, headers=headers, timeout=EXPORT_TIMEOUT_S),
            )
        )
    lf = telemetry.langfuse
    if lf is not None:
        token = base64.b64encode(f"{lf.public_key.reveal()}:{lf.secret_key.reveal()}".encode()).decode()
        out.append(
            (
                "Langfuse",
                CompactOTLPSpanExporter(
                    endpoint=lf.host.rstrip("/") + LANGFUSE_OTLP_PATH,
                    headers={"authorization": f"Basic {token}"},
                    timeout=EXPORT_TIMEOUT_S,
                ),
            )
        )
    return out


def start_tracing(config: Config, provider_types: Mapping[str, str]) -> None:
    t = config.telemetry
    TRACING.configure(
        exporters(t), sample_ratio=t.otlp.sample_ratio if t.otlp is not None else 1.0,
        provider_types=provider_types, langfuse=t.langfuse is not None,
    )  # fmt: skip


async def stop_telemetry(publisher: SnapshotPublisher | None) -> None:
    """The last metrics snapshot published; queued spans flushed (off the loop, bounded)."""
    if publisher is not None:
        await publisher.close()
    await asyncio.get_running_loop().run_in_executor(None, TRACING.shutdown)
