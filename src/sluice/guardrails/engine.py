"""The policy's guardrails, built once per policy: one :class:`Guard` per named guardrail, one
:class:`Plan` per route (``routing.guardrails`` first, then the route's own list), and the per-request
:class:`RequestState` (placeholders and verdicts)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from sluice.config.guardrails import (
    PII_ENTITIES,
    GuardrailConfig,
    OutputSchemaGuardrail,
    PiiGuardrail,
    PromptInjectionGuardrail,
    SecretsGuardrail,
    WebhookGuardrail,
)
from sluice.errors import GuardrailBlocked, GuardrailUnavailable
from sluice.guardrails.detector import Detector, FindingsCache
from sluice.guardrails.injection import InjectionScorer
from sluice.guardrails.pii import PiiDetector
from sluice.guardrails.redact import Placeholders
from sluice.guardrails.secrets import SecretsDetector
from sluice.guardrails.verdict import Verdict, describe
from sluice.telemetry.metrics import METRICS

_encode = msgspec.json.Encoder().encode

#: Order in which a direction's guardrails run: blocks and logs see the text as it came, redactions last.
_ACTION_ORDER = {"block": 0, "log": 1, "redact": 2}


@dataclass(frozen=True, slots=True)
class Guard:
    name: str
    type: str
    action: str
    on_input: bool
    on_output: bool
    allow_on_error: bool
    #: pii and secrets: the entity detector.
    detector: Detector | None = None
    restore: bool = False
    threshold: float = 0.5
    retry: bool = False
    webhook: WebhookGuardrail | None = None
    scorer: InjectionScorer | None = None
    #: ``detector`` behind a cache of recent whole texts (input and whole answers; not streams).
    cached: FindingsCache | None = None

    def verdict(self, direction: str, outcome: str, **extra: object) -> Verdict:
        return Verdict(
            guardrail=self.name, type=self.type, direction=direction, action=self.action, outcome=outcome,
            **extra,  # type: ignore[arg-type]
        )  # fmt: skip


def build_guard(name: str, cfg: GuardrailConfig) -> Guard:
    detector: Detector | None = None
    if isinstance(cfg, PiiGuardrail):
        detector = PiiDetector(cfg.entities, cfg.patterns)
    elif isinstance(cfg, SecretsGuardrail):
        detector = SecretsDetector(entropy=cfg.entropy)
    injection = isinstance(cfg, PromptInjectionGuardrail)
    return Guard(
        name=name,
        type=type(cfg).__struct_config__.tag,  # type: ignore[arg-type]
        action=cfg.action,
        on_input="input" in cfg.on,
        on_output="output" in cfg.on,
        allow_on_error=cfg.on_error == "allow",
        detector=detector,
        restore=isinstance(cfg, PiiGuardrail) and cfg.restore,
        threshold=cfg.threshold if isinstance(cfg, PromptInjectionGuardrail) else 0.5,
        retry=isinstance(cfg, OutputSchemaGuardrail) and cfg.retry,
        webhook=cfg if isinstance(cfg, WebhookGuardrail) else None,
        scorer=InjectionScorer() if injection else None,
        cached=FindingsCache(detector) if detector is not None else None,
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """What runs on one route's requests."""

    input: tuple[Guard, ...]
    #: pii / secrets on the answer (the streaming scanner's detectors).
    output_text: tuple[Guard, ...]
    output_schema: Guard | None
    #: ``x-sluice-guardrails``: the names that run on this route, in order.
    header: str

    @property
    def empty(self) -> bool:
        return not (self.input or self.output_text or self.output_schema)


def build_plan(names: Iterable[str], guards: Mapping[str, Guard]) -> Plan:
    chosen = [guards[n] for n in dict.fromkeys(names)]  # de-duplicated, order kept
    ordered = sorted(chosen, key=lambda g: _ACTION_ORDER[g.action])
    inputs = tuple(g for g in ordered if g.on_input and g.type != "output_schema")
    texts = tuple(g for g in ordered if g.on_output and g.detector is not None)
    schema = next((g for g in chosen if g.type == "output_schema"), None)
    return Plan(inputs, texts, schema, ",".join(g.name for g in chosen))


def payload_detectors(guards: Iterable[Guard]) -> tuple[Detector, ...]:
    """What ``logging.payloads: redacted`` runs over stored bodies: every PII entity and the
    secrets detector always, plus each pii guardrail's own named patterns."""
    patterns: dict[str, str] = {}
    for g in guards:
        if isinstance(g.detector, PiiDetector):
            patterns.update(g.detector.patterns)
    return (FindingsCache(PiiDetector(PII_ENTITIES, patterns)), FindingsCache(SecretsDetector(entropy=True)))


#: A verdict's outcome as ``sluice_guardrail_verdicts_total`` counts it.
_METRIC_VERDICT = {"blocked": "block", "redacted": "redact", "flagged": "flag", "error": "error",
                   "unavailable": "error"}  # fmt: skip


@dataclass(slots=True)
class RequestState:
    """One request's guardrail state: placeholders (shared by input and output) and verdicts."""

    plan: Plan
    placeholders: Placeholders = field(default_factory=Placeholders)
    verdicts: list[Verdict] = field(default_factory=list)

    def record(self, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
        METRICS.guardrail_verdict(
            verdict.guardrail, verdict.direction, _METRIC_VERDICT.get(verdict.outcome, "error")
        )

    def encoded(self) -> str | None:
        return _encode(self.verdicts).decode() if self.verdicts else None

    def blocked(
        self, guard: Guard, direction: str, counts: dict[str, int], detail: str | None = None
    ) -> GuardrailBlocked:
        what = detail or describe(counts)
        self.record(guard.verdict(direction, "blocked", counts=counts, detail=detail))
        return GuardrailBlocked(guard.name, direction, what)

    def failed(self, guard: Guard, direction: str, reason: str) -> GuardrailUnavailable | None:
        """A guardrail errored: fail closed (the error to raise) unless ``on_error: allow`` (None)."""
        outcome = "error" if guard.allow_on_error else "unavailable"
        self.record(guard.verdict(direction, outcome, detail=reason))
        return None if guard.allow_on_error else GuardrailUnavailable(guard.name)
