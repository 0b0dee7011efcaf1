"""Policy structs for guardrails: checks on what goes to a provider and what comes back.

Where they sit in the policy file::

    guardrails: {name: <one of the types below>}   the named guardrails (``type`` picks the struct)
    routes[i].guardrails: [name, ...]               applied to that route's requests
    routing.guardrails: [name, ...]                 applied to every request, before the route's own
    logging.payloads: none | redacted | full        request/response bodies in the request record

Each type is its own struct (a tagged union on ``type``), so a setting that does not belong to a
type is an unknown key with its path, like any other. Cross-references and the combinations that a
schema cannot express are checked in :func:`check_guardrails`.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal, TypeAlias

import msgspec

from sluice.config.secret import Secret
from sluice.errors import ConfigError

Action = Literal["block", "redact", "log"]
Direction = Literal["input", "output"]
OnError = Literal["block", "allow"]
PiiEntity = Literal["email", "phone", "credit_card", "iban", "ssn", "ip"]
PayloadMode = Literal["none", "redacted", "full"]

PII_ENTITIES: Final[tuple[PiiEntity, ...]] = ("email", "phone", "credit_card", "iban", "ssn", "ip")
Threshold = Annotated[float, msgspec.Meta(gt=0, le=1)]
Timeout = Annotated[float, msgspec.Meta(gt=0, le=60)]


def _both() -> list[Direction]:
    return ["input", "output"]


class _Guardrail(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    action: Action = "block"
    on: list[Direction] = msgspec.field(default_factory=_both)
    #: A guardrail that errors or times out blocks (503) unless this says ``allow``.
    on_error: OnError = "block"


class PiiGuardrail(_Guardrail, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="pii"):
    entities: list[PiiEntity] = msgspec.field(default_factory=lambda: list(PII_ENTITIES))
    #: User-defined entities: name -> regular expression (Python syntax).
    patterns: dict[str, str] = msgspec.field(default_factory=dict)
    #: Put the input's placeholders back into the answer for the caller (never for the provider).
    restore: bool = False


class SecretsGuardrail(_Guardrail, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="secrets"):
    #: Also flag long random-looking tokens (Shannon entropy) that match no known key format.
    entropy: bool = True


class PromptInjectionGuardrail(
    _Guardrail, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="prompt_injection"
):
    on: list[Direction] = msgspec.field(default_factory=lambda: ["input"])
    threshold: Threshold = 0.5


class OutputSchemaGuardrail(
    _Guardrail, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="output_schema"
):
    on: list[Direction] = msgspec.field(default_factory=lambda: ["output"])
    #: On an invalid answer, ask the upstream once more before blocking (not for streams).
    retry: bool = False


class WebhookGuardrail(_Guardrail, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="webhook"):
    on: list[Direction] = msgspec.field(default_factory=lambda: ["input"])
    url: str
    timeout_s: Timeout = 0.5
    #: Sent with every call (e.g. the service's API key as ``env:NAME``).
    api_key: Secret | None = None


GuardrailConfig: TypeAlias = (
    PiiGuardrail | SecretsGuardrail | PromptInjectionGuardrail | OutputSchemaGuardrail | WebhookGuardrail
)


def fix_yaml_on_keys(data: dict[object, object]) -> None:
    """YAML 1.1 reads a bare ``on:`` key as the boolean true; in ``guardrails.*`` it means ``on``."""
    entries = data.get("guardrails")
    if isinstance(entries, dict):
        for entry in entries.values():
            if isinstance(entry, dict) and True in entry and "on" not in entry:
                entry["on"] = entry.pop(True)


def _fail(origin: str, message: str, path: str) -> ConfigError:
    return ConfigError(f"{origin}: {message} - at `{path}`")


def check_guardrails(
    guardrails: dict[str, GuardrailConfig], lists: list[tuple[str, list[str]]], origin: str
) -> None:
    """``lists``: (path, names) for ``routing.guardrails`` and every route's ``guardrails``."""
    for name, g in guardrails.items():
        _check_one(name, g, origin)
    for path, names in lists:
        for i, name in enumerate(names):
            if name not in guardrails:
                known = ", ".join(sorted(guardrails)) or "none are defined under `guardrails:`"
                raise _fail(origin, f"unknown guardrail '{name}' (known: {known})", f"{path}[{i}]")


def _check_one(name: str, g: GuardrailConfig, origin: str) -> None:
    path = f"$.guardrails.{name}"
    if not g.on:
        raise _fail(origin, "a guardrail must apply to input, output or both", f"{path}.on")
    if len(set(g.on)) != len(g.on):
        raise _fail(origin, "listed twice", f"{path}.on")
    if isinstance(g, PiiGuardrail):
        _check_pii(g, path, origin)
    elif isinstance(g, PromptInjectionGuardrail):
        if g.action == "redact":
            raise _fail(origin, "prompt_injection can block or log, not redact", f"{path}.action")
        if "output" in g.on:
            raise _fail(origin, "prompt_injection checks input only", f"{path}.on")
    elif isinstance(g, OutputSchemaGuardrail):
        if g.action == "redact":
            raise _fail(origin, "output_schema can block or log, not redact", f"{path}.action")
        if g.on != ["output"]:
            raise _fail(origin, "output_schema checks output only", f"{path}.on")
    elif isinstance(g, WebhookGuardrail):
        _check_webhook(g, path, origin)


def _check_pii(g: PiiGuardrail, path: str, origin: str) -> None:
    if not g.entities and not g.patterns:
        raise _fail(origin, "no entities and no patterns: this guardrail would find nothing", path)
    for entity, pattern in g.patterns.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", entity):
            raise _fail(origin, "a pattern's name must be lower_snake_case (it names the placeholder)",
                        f"{path}.patterns.{entity}")  # fmt: skip
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise _fail(origin, f"invalid regular expression: {exc}", f"{path}.patterns.{entity}") from None
        if compiled.match(""):
            raise _fail(origin, "the pattern matches the empty string", f"{path}.patterns.{entity}")
    if g.restore and g.action != "redact":
        raise _fail(origin, "restore needs action: redact", f"{path}.restore")


def _check_webhook(g: WebhookGuardrail, path: str, origin: str) -> None:
    if g.action == "redact":
        raise _fail(origin, "a webhook guardrail can block or log, not redact", f"{path}.action")
    if "output" in g.on:
        raise _fail(origin, "webhook guardrails check input only (output is not supported yet)", f"{path}.on")
    if not g.url.startswith(("http://", "https://")):
        raise _fail(origin, "must be an http:// or https:// URL", f"{path}.url")
