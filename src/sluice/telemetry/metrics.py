"""The gateway's metrics: every family, and the calls the layers make to count into them.

There is one :data:`METRICS` per process, like ``prometheus_client``'s default registry: layers
call it where the event happens (routing for breakers and retry budgets, limits for refusals, the
store writer for its backlog), and accounting once per finished request. ``app.running`` binds the
policy's :class:`Vocabulary` at start-up, so labels stay bounded by the policy.

Calls for the layers that count into it (each a few dict operations, safe on the hot path):

* ``observe_request(record, attempts)`` — accounting, once per request (requests, latency, TTFT,
  overhead, tokens, cost, upstream attempts, retries, fallbacks);
* ``cache_lookup(route, outcome)`` — the cache: outcome in ``hit | semantic_hit | miss | bypass | error``;
* ``guardrail_verdict(name, stage, verdict)`` — guardrails: stage ``input | output``, verdict
  ``allow | redact | block | flag | error``; ``name`` is the policy's guardrail name (bind them with
  ``Vocabulary.of(guardrails=...)``);
* ``breaker_transition(provider, model, state)``, ``retry_budget_refused()`` — routing;
* ``limit_refused(level, limit)`` — limits: level ``route | team | key | user | provider``, limit
  ``rpm | tpm | concurrent | budget``;
* ``state_error(backend)``, ``store_error(op)`` — Redis and database failures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

from sluice.schema.context import Attempt
from sluice.telemetry.labels import (
    CACHE_OUTCOMES,
    ERROR_KINDS,
    GUARDRAIL_STAGES,
    GUARDRAIL_VERDICTS,
    LEVELS,
    LIMITS,
    NONE,
    RELOAD_OUTCOMES,
    Vocabulary,
    bounded,
)
from sluice.telemetry.prom import GaugeCallback, Labels, Registry

#: ``gen_ai.client.operation.duration``'s advised boundaries (OpenTelemetry GenAI semantic
#: conventions), then three more doublings so a long stream's tail (request_timeout_s defaults to
#: 600) is still read from a bucket rather than from +Inf.
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                           40.96, 81.92, 163.84, 327.68, 655.36)  # fmt: skip
#: ``gen_ai.server.time_to_first_token``'s advised boundaries.
TTFT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                       5.0, 7.5, 10.0)  # fmt: skip
#: The gateway's own time per request: tens of microseconds to a few milliseconds.
OVERHEAD_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                           0.25, 0.5, 1.0)  # fmt: skip

CLIENT_CLOSED: Final = 499


class RequestFacts(Protocol):
    """What a finished request's record says (``store.records.RequestRecord`` has these)."""

    endpoint: str
    team: str | None
    route: str | None
    requested_model: str | None
    served_model: str | None
    provider: str | None
    stream: bool
    status: int
    error_source: str | None
    error_kind: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    latency_ms: float
    ttft_ms: float | None
    shadow_of: str | None
    #: ``logging.payloads``: the bodies as the record keeps them (redacted unless ``full``), or None.
    request_body: str | None
    response_body: str | None


def status_class(status: int | None) -> str:
    if status is None:
        return NONE
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def error_source(status: int, source: str | None) -> str:
    """``provider`` when an upstream failed; ``client`` when the caller left (499) or sent something
    the gateway refuses as malformed or unauthorised (4xx other than 429); else ``gateway``."""
    if source is None and status < 400:
        return NONE
    if source == "provider":
        return "provider"
    if status == CLIENT_CLOSED or (400 <= status < 500 and status != 429):
        return "client"
    return "gateway"


_REQ = (
    "endpoint",
    "route",
    "model",
    "served_model",
    "provider",
    "status_class",
    "error_source",
    "error_kind",
)
_LAT = ("endpoint", "route", "model", "provider")
_TOK = ("team", "model", "provider", "type")
_COST = ("team", "model", "provider")
_ATT = ("provider", "model", "status_class", "error_kind")


class _Series:
    """The label tuples of one (endpoint, team, route, model, served model, provider), made once:
    a request then costs dict operations on tuples that already exist."""

    __slots__ = ("cost", "latency", "model", "overhead", "request_prefix", "requests", "route",
                 "tok_cached", "tok_input", "tok_output", "tok_reasoning")  # fmt: skip

    def __init__(self, endpoint: str, labels: tuple[str, ...]) -> None:
        team, route, model, served, provider = labels
        self.route, self.model = route, model
        self.request_prefix = (endpoint, route, model, served, provider)
        #: (status, error source, error kind) -> the full label tuple of sluice_requests_total
        self.requests: dict[tuple[int, str | None, str | None], Labels] = {}
        self.latency = (endpoint, route, model, provider)
        self.overhead = (endpoint, route)
        self.tok_input = (team, served, provider, "input")
        self.tok_output = (team, served, provider, "output")
        self.tok_cached = (team, served, provider, "cached")
        self.tok_reasoning = (team, served, provider, "reasoning")
        self.cost = (team, served, provider)


class GatewayMetrics:
    def __init__(self, vocab: Vocabulary | None = None) -> None:
        self._vocab = vocab or Vocabulary()
        self._series: dict[tuple[str, tuple[str, ...]], _Series] = {}
        r = self.registry = Registry()
        self.requests = r.counter("sluice_requests_total", "Requests answered, by outcome.", _REQ)
        self.duration = r.histogram(
            "sluice_request_duration_seconds", "Time from request to the last byte of the answer.",
            _LAT, DURATION_BUCKETS,
        )  # fmt: skip
        self.ttft = r.histogram(
            "sluice_time_to_first_token_seconds",
            "Streamed requests: time to the first token.",
            _LAT,
            TTFT_BUCKETS,
        )
        self.overhead = r.histogram(
            "sluice_gateway_overhead_seconds",
            "Request time minus upstream attempt time and retry waits: what the gateway adds.",
            ("endpoint", "route"), OVERHEAD_BUCKETS,
        )  # fmt: skip
        self.attempts = r.counter("sluice_upstream_attempts_total", "Upstream attempts, by outcome.", _ATT)
        self.attempt_duration = r.histogram(
            "sluice_upstream_attempt_duration_seconds", "One upstream attempt, start to end.",
            ("provider", "model"), DURATION_BUCKETS,
        )  # fmt: skip
        self.tokens = r.counter(
            "sluice_tokens_total", "Tokens billed, by type (input, output, cached, reasoning).", _TOK
        )
        self.cost = r.counter("sluice_cost_usd_total", "Cost in USD at the price book's prices.", _COST)
        self.retries = r.counter("sluice_retries_total", "Attempts on a target already tried for the request.",
                                 ("provider", "model"))  # fmt: skip
        self.fallbacks = r.counter(
            "sluice_fallbacks_total", "Attempts that moved to another target.", ("route", "model", "provider")
        )
        self.retry_budget = r.counter(
            "sluice_retry_budget_refusals_total", "Retries refused by the retry budget."
        )
        self.breaker = r.counter("sluice_breaker_transitions_total", "Circuit breaker state changes.",
                                 ("provider", "model", "state"))  # fmt: skip
        self.refusals = r.counter("sluice_limit_refusals_total", "Requests refused by a rate limit or budget.",
                                  ("level", "limit"))  # fmt: skip
        self.cache = r.counter(
            "sluice_cache_lookups_total", "Response cache lookups, by outcome.", ("route", "outcome")
        )
        self.guardrails = r.counter("sluice_guardrail_verdicts_total", "Guardrail verdicts.",
                                    ("guardrail", "stage", "verdict"))  # fmt: skip
        self.reloads = r.counter(
            "sluice_policy_reloads_total",
            "Policy reloads, by outcome (applied, unchanged, refused).",
            ("outcome",),
        )
        self.state_errors = r.counter(
            "sluice_state_errors_total", "Failed calls to the shared state backend.", ("backend",)
        )
        self.store_errors = r.counter(
            "sluice_store_errors_total", "Failed writes or reads of the store.", ("op",)
        )
        self.trace_export_failures = r.counter(
            "sluice_trace_export_failures_total", "Span batches the OTLP exporter could not deliver."
        )
        # Counted from the exporter's thread: its one series exists from the start, so a scrape
        # never iterates a dict that thread is growing.
        self.trace_export_failures.inc((), 0.0)
        self.retry_budget.inc((), 0.0)

    # ------------------------------------------------------------------ per request
    def observe_request(self, r: RequestFacts, attempts: Sequence[Attempt]) -> None:
        labels = self.vocab.request_labels(r.team, r.route, r.requested_model, r.served_model, r.provider)
        endpoint = r.endpoint if r.endpoint in ("chat", "embeddings") else "other"
        series = self._series.get((endpoint, labels))
        if series is None:
            series = self._new_series(endpoint, labels)
        if r.shadow_of is not None:  # a mirrored call: its attempts and spend count, not as a request
            if attempts:
                self._attempts(attempts, series.route, series.model)
            self._usage(r, series)
            return
        outcome = (r.status, r.error_source, r.error_kind)
        req = series.requests.get(outcome)
        if req is None:
            req = series.requests[outcome] = (*series.request_prefix, *self._outcome(*outcome))
        self.requests.inc(req)
        seconds = r.latency_ms / 1000.0
        self.duration.observe(series.latency, seconds)
        if r.ttft_ms is not None:
            self.ttft.observe(series.latency, r.ttft_ms / 1000.0)
        upstream = self._attempts(attempts, series.route, series.model) if attempts else 0.0
        self.overhead.observe(series.overhead, max(0.0, seconds - upstream))
        self._usage(r, series)

    def _new_series(self, endpoint: str, labels: tuple[str, ...]) -> _Series:
        if len(self._series) >= 65536:  # bounded: the labels are, the raw inputs behind them not
            self._series.clear()
        series = self._series[(endpoint, labels)] = _Series(endpoint, labels)
        return series

    @staticmethod
    def _outcome(status: int, source: str | None, kind: str | None) -> tuple[str, str, str]:
        k = "client_closed" if status == CLIENT_CLOSED and kind is None else bounded(kind, ERROR_KINDS)
        return status_class(status), error_source(status, source), k

    def _usage(self, r: RequestFacts, series: _Series) -> None:
        tokens = self.tokens
        if r.prompt_tokens:
            tokens.inc(series.tok_input, r.prompt_tokens)
        if r.completion_tokens:
            tokens.inc(series.tok_output, r.completion_tokens)
        if r.cached_tokens:
            tokens.inc(series.tok_cached, r.cached_tokens)
        if r.reasoning_tokens:
            tokens.inc(series.tok_reasoning, r.reasoning_tokens)
        if r.cost_usd:
            self.cost.inc(series.cost, r.cost_usd)

    def _attempts(self, attempts: Sequence[Attempt], route: str, model: str) -> float:
        """Counts each attempt; returns the upstream time and waits in seconds."""
        vocab = self.vocab
        spent = 0.0
        seen: list[tuple[str, str]] = []
        for a in attempts:
            p, m = vocab.provider(a.provider), vocab.served(a.model)
            kind = bounded(a.error_kind, ERROR_KINDS) if a.error_kind else NONE
            self.attempts.inc((p, m, status_class(a.status), kind))
            self.attempt_duration.observe((p, m), a.latency_ms / 1000.0)
            spent += (a.latency_ms + a.backoff_ms) / 1000.0
            target = (a.provider, a.model)
            if target in seen:
                self.retries.inc((p, m))
            elif seen:
                self.fallbacks.inc((route, model, p))
            seen.append(target)
        return spent

    @property
    def vocab(self) -> Vocabulary:
        return self._vocab

    @vocab.setter
    def vocab(self, vocab: Vocabulary) -> None:
        self._vocab = vocab
        self._series = {}

    # ------------------------------------------------------------------ events
    def policy_reload(self, outcome: str) -> None:
        self.reloads.inc((bounded(outcome, RELOAD_OUTCOMES),))

    def cache_lookup(self, route: str | None, outcome: str) -> None:
        self.cache.inc((self.vocab.route(route), bounded(outcome, CACHE_OUTCOMES)))

    def guardrail_verdict(self, name: str, stage: str, verdict: str) -> None:
        self.guardrails.inc(
            (
                self.vocab.guardrail(name),
                bounded(stage, GUARDRAIL_STAGES),
                bounded(verdict, GUARDRAIL_VERDICTS),
            )
        )

    def breaker_transition(self, provider: str, model: str, state: str) -> None:
        self.breaker.inc((self.vocab.provider(provider), self.vocab.served(model), state))

    def retry_budget_refused(self) -> None:
        self.retry_budget.inc(())

    def limit_refused(self, level: str, limit: str) -> None:
        self.refusals.inc((bounded(level, LEVELS), bounded(limit, LIMITS)))

    def state_error(self, backend: str) -> None:
        self.state_errors.inc((backend if backend in ("redis", "memory") else "other",))

    def store_error(self, op: str) -> None:
        self.store_errors.inc((op if op in ("write", "read", "spool") else "other",))

    # ------------------------------------------------------------------ read at scrape time
    def watch(
        self,
        name: str,
        help_text: str,
        read: Callable[[], Iterable[tuple[Labels, float]]],
        label_names: Sequence[str] = (),
        *,
        merge: str = "sum",
        counter: bool = False,
    ) -> None:
        """A value its owner keeps (a queue depth, a breaker's state), read when scraped."""
        self.registry.gauge(
            GaugeCallback(
                name,
                help_text,
                label_names,
                read,
                "max" if merge == "max" else "sum",
                "counter" if counter else "gauge",
            )
        )


#: The process's metrics (see the module docstring for who calls what).
METRICS: Final = GatewayMetrics()


def bind(vocab: Vocabulary) -> None:
    """Bound the labels by this policy's names (start-up; a reload binds the new policy)."""
    METRICS.vocab = vocab
