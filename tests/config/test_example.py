"""examples/sluice.yaml says it has every key this version understands: it does (that it loads is
tested in test_loader)."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import msgspec
import yaml

from sluice.config.guardrails import fix_yaml_on_keys
from sluice.config.model import Config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sluice.yaml"


def _inner(t: Any) -> Any:
    """The struct a field holds, or ("list" | "dict", struct) for collections of structs."""
    origin = typing.get_origin(t)
    if origin is typing.Annotated:
        return _inner(typing.get_args(t)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(t):
            found = _inner(arg) if arg is not type(None) else None
            if found is not None:
                return found
        return None
    if origin in (list, tuple):
        inner = _inner(typing.get_args(t)[0])
        return ("list", inner) if isinstance(inner, type) else None
    if origin is dict:
        inner = _inner(typing.get_args(t)[1])
        return ("dict", inner) if isinstance(inner, type) else None
    return t if isinstance(t, type) and issubclass(t, msgspec.Struct) else None


def missing_keys(struct: type, values: list[Any], path: str) -> list[str]:
    """Every key of ``struct`` that none of ``values`` (the example's instances of it) shows."""
    hints = typing.get_type_hints(struct, include_extras=True)
    out: list[str] = []
    for field in msgspec.structs.fields(struct):
        present = [v[field.encode_name] for v in values if isinstance(v, dict) and field.encode_name in v]
        here = f"{path}.{field.encode_name}"
        if not present:
            out.append(here)
            continue
        inner = _inner(hints[field.name])
        if isinstance(inner, tuple):
            kind, sub = inner
            items = [
                x
                for p in present
                for x in (p.values() if kind == "dict" else p)
                if isinstance(p, dict | list)
            ]
            out.extend(missing_keys(sub, items, here + "[]"))
        elif inner is not None:
            out.extend(missing_keys(inner, present, here))
    return out


#: Keys the example shows commented out: files that must exist (TLS), or the other form of a key
#: that takes one of two (the semantic cache's embedder).
COMMENTED = re.compile(r"^(\s*)# (tls: |embedder: \{model)", re.MULTILINE)


def test_the_example_shows_every_key() -> None:
    data = yaml.safe_load(COMMENTED.sub(r"\1\2", EXAMPLE.read_text()))
    fix_yaml_on_keys(data)  # YAML 1.1 reads a bare `on:` as true; the loader maps it back
    assert missing_keys(Config, [data], "$") == []
