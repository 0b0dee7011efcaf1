"""Load the policy file: YAML → typed frozen :class:`Config`, with ``env:NAME`` secrets resolved.

Every failure is a :class:`ConfigError` whose message names the key's path (``$.providers.x.api_key``).
"""

from __future__ import annotations

import hashlib
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from sluice.config.cache import check_cache
from sluice.config.feedback import check_feedback
from sluice.config.guardrails import check_guardrails, fix_yaml_on_keys
from sluice.config.model import Config, Secret
from sluice.config.routing_checks import check_routing
from sluice.config.telemetry import check_telemetry
from sluice.errors import ConfigError

ENV_PREFIX = "env:"


def _make_dec_hook(environ: Mapping[str, str], missing: dict[str, None] | None = None) -> Any:
    """``missing``: where unset variables are collected (the secret is left empty) so that all
    of them are reported at once; without it the first one raises."""

    def dec_hook(typ: type, obj: Any) -> Any:
        if typ is Secret:
            if not isinstance(obj, str):
                raise TypeError("expected a string like 'env:NAME'")
            if not obj.startswith(ENV_PREFIX):
                raise ValueError("secrets must be read from the environment: write 'env:NAME'")
            name = obj[len(ENV_PREFIX) :]
            if not name:
                raise ValueError("'env:' needs a variable name")
            value = environ.get(name)
            if value is None or value == "":
                if missing is None:
                    raise ValueError(f"environment variable {name} is not set")
                missing[name] = None
                return Secret("", obj)
            return Secret(value, obj)
        raise NotImplementedError(typ)

    return dec_hook


def parse_config(data: Any, environ: Mapping[str, str] | None = None, *, origin: str = "config") -> Config:
    """Convert already-parsed YAML/JSON data into a validated Config."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the policy file must be a mapping at the top level")
    env = os.environ if environ is None else environ
    missing: dict[str, None] = {}
    hook = _make_dec_hook(env, missing)
    fix_yaml_on_keys(data)
    _check_named_entries(data, hook, origin)
    try:
        config = msgspec.convert(data, Config, dec_hook=hook, str_keys=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    if missing:
        raise ConfigError(f"{origin}: " + "; ".join(_unset(data, list(missing))))
    _check_references(config, origin)
    try:
        check_telemetry(config.metrics, config.telemetry, config.server.admin_key is not None, env)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc.message}") from None
    return config


def _unset(data: Any, names: list[str]) -> list[str]:
    """One clause per unset variable, with every place the policy reads it."""
    places: dict[str, list[str]] = {n: [] for n in names}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, str) and node.startswith(ENV_PREFIX) and node[len(ENV_PREFIX) :] in places:
            places[node[len(ENV_PREFIX) :]].append(f"`{path}`")

    walk(data, "$")
    return [f"environment variable {n} is not set - at {', '.join(places[n]) or '`$`'}" for n in names]


def _check_named_entries(data: dict[str, Any], hook: Any, origin: str) -> None:
    """msgspec shows mapping keys as ``[...]`` in error paths; convert each named entry of the
    top-level mappings (providers, models, teams, ...) on its own so the path names it."""
    for field in msgspec.structs.fields(Config):
        if typing.get_origin(field.type) is not dict or not isinstance(data.get(field.name), dict):
            continue
        value_type = typing.get_args(field.type)[1]
        for name, entry in data[field.name].items():
            try:
                msgspec.convert(entry, value_type, dec_hook=hook, str_keys=True)
            except msgspec.ValidationError as exc:
                message = str(exc).replace("`$", f"`$.{field.name}.{name}", 1)
                if " - at `" not in message:
                    message += f" - at `$.{field.name}.{name}`"
                raise ConfigError(f"{origin}: {message}") from None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {p}: {exc.strerror}") from None
    return load_config_bytes(raw, str(p), environ)


def load_config_bytes(raw: bytes, origin: str, environ: Mapping[str, str] | None = None) -> Config:
    """The policy file's bytes, already read (a reload hashes the very bytes it parses)."""
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{origin}: the policy file is not UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: invalid YAML: {exc}") from None
    return parse_config(data, environ, origin=origin)


def policy_version(raw: bytes) -> str:
    """A policy's version: the first 16 hex digits of the SHA-256 of its file."""
    return hashlib.sha256(raw).hexdigest()[:16]


def _check_references(config: Config, origin: str) -> None:
    """Cross-references that a schema alone cannot express."""
    for name, model in config.models.items():
        if not model.targets:
            raise ConfigError(f"{origin}: model has no targets - at `$.models.{name}.targets`")
        for i, target in enumerate(model.targets):
            path = f"$.models.{name}.targets[{i}]"
            if target.provider not in config.providers:
                raise ConfigError(f"{origin}: unknown provider '{target.provider}' - at `{path}.provider`")
    check_routing(config, origin)
    bad_metric = check_feedback(config.feedback)
    if bad_metric is not None:
        raise ConfigError(f"{origin}: {bad_metric[1]} - at `{bad_metric[0]}`")
    lists = [("$.routing.guardrails", config.routing.guardrails)]
    lists += [(f"$.routes[{i}].guardrails", r.guardrails) for i, r in enumerate(config.routes)]
    check_guardrails(config.guardrails, lists, origin)
    check_cache(config.cache, [r.cache for r in config.routes], config.state.url, config.models, origin)
    for team_name, team in config.teams.items():
        for i, model_name in enumerate(team.models or []):
            if model_name not in config.models:
                raise ConfigError(
                    f"{origin}: unknown model '{model_name}' - at `$.teams.{team_name}.models[{i}]`"
                )
    for provider in config.limits.providers:
        if provider not in config.providers:
            raise ConfigError(f"{origin}: unknown provider '{provider}' - at `$.limits.providers.{provider}`")
    for period in config.reports.periods():
        if config.alerts.webhook is None:
            raise ConfigError(
                f"{origin}: a report sent to the webhook needs alerts.webhook - at `$.reports.{period}.to`"
            )
    if config.server.max_body_bytes <= 0:
        raise ConfigError(f"{origin}: must be positive - at `$.server.max_body_bytes`")
    if config.server.workers < 1:
        raise ConfigError(f"{origin}: must be at least 1 - at `$.server.workers`")
    if config.server.workers > 1 and config.state.url.startswith("memory:"):
        raise ConfigError(
            f"{origin}: server.workers > 1 needs shared state: set state.url to redis://... "
            "(in-memory limits and budgets would be multiplied by the number of workers) - at `$.server.workers`"
        )


def policy_warnings(config: Config) -> list[str]:
    """What is valid but almost certainly not meant (``check-config`` prints these, ``serve`` logs them)."""
    warnings = []
    if not config.models:
        warnings.append(
            "the policy declares no models: the gateway will serve nothing (every request is refused "
            "with 404). Declare providers: and models: (see examples/sluice.yaml)"
        )
    elif not config.teams:
        warnings.append("the policy declares no teams: no key can be created (keys belong to a team)")
    return warnings
