"""Policy sections for observability: ``metrics`` (the Prometheus endpoint) and ``telemetry``
(OpenTelemetry traces over OTLP/HTTP, and the Langfuse preset)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from sluice.config.secret import Secret
from sluice.errors import ConfigError

ENV_PREFIX = "env:"


class MetricsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    #: ``true``: ``GET /metrics`` needs ``Authorization: Bearer <server.admin_key>``.
    auth: bool = False
    #: ``host:port`` of a second listener that serves ``/metrics`` only (and /healthz).
    listen: str | None = None

    def listen_address(self) -> tuple[str, int] | None:
        if self.listen is None:
            return None
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"metrics.listen must be host:port, got {self.listen!r} - at `$.metrics.listen`"
            )
        return host.strip("[]"), int(port)


class OtlpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    #: The collector's OTLP/HTTP base URL (``/v1/traces`` is added unless the URL already ends in
    #: it), or ``env:NAME``.
    endpoint: str
    #: Extra request headers (a tenant, a token); a value may be ``env:NAME``.
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    #: Share of requests traced (a sampled incoming ``traceparent`` is always followed).
    sample_ratio: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 1.0


class LangfuseConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    #: Langfuse's base URL (cloud or self-hosted), e.g. https://cloud.langfuse.com.
    host: str
    public_key: Secret
    secret_key: Secret


class TelemetryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    otlp: OtlpConfig | None = None
    langfuse: LangfuseConfig | None = None


def resolve(value: str, where: str, environ: Mapping[str, str] | None = None) -> str:
    """A plain value, or ``env:NAME`` read from the environment (which must set it)."""
    if not value.startswith(ENV_PREFIX):
        return value
    env = os.environ if environ is None else environ
    name = value[len(ENV_PREFIX) :]
    got = env.get(name)
    if not name or not got:
        raise ConfigError(f"environment variable {name or '(empty)'} is not set - at `{where}`")
    return got


def traces_url(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def check_telemetry(
    metrics: MetricsConfig,
    telemetry: TelemetryConfig,
    has_admin_key: bool,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Checks a schema cannot express (run by check-config and at start)."""
    metrics.listen_address()
    if metrics.auth and not has_admin_key:
        raise ConfigError(
            "metrics.auth needs server.admin_key (the key /metrics asks for) - at `$.metrics.auth`"
        )
    otlp = telemetry.otlp
    if otlp is not None:
        url = resolve(otlp.endpoint, "$.telemetry.otlp.endpoint", environ)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                "telemetry.otlp.endpoint must be an http(s) URL - at `$.telemetry.otlp.endpoint`"
            )
        for name, value in otlp.headers.items():
            resolve(value, f"$.telemetry.otlp.headers.{name}", environ)
    lf = telemetry.langfuse
    if lf is not None and not lf.host.startswith(("http://", "https://")):
        raise ConfigError("telemetry.langfuse.host must be an http(s) URL - at `$.telemetry.langfuse.host`")
