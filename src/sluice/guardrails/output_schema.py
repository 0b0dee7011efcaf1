"""``output_schema``: when a request asks for ``response_format: json_schema``, the answer must be JSON
that validates against that schema (jsonschema's validator for the schema's own draft).

Validators are compiled once per distinct schema (a small LRU), because compiling costs far more
than validating. Error messages name the failing path and keyword, never the answer's values.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import jsonschema
import msgspec

from sluice.schema.chat import ChatRequest

_MAX_CACHED = 256
_encode = msgspec.json.Encoder(order="sorted").encode


class InvalidSchema(Exception):
    """The request's own schema is not a valid JSON Schema."""


def requested_schema(chat: ChatRequest) -> dict[str, Any] | None:
    fmt = chat.response_format
    if fmt is None or fmt.type != "json_schema" or not fmt.json_schema:
        return None
    schema = fmt.json_schema.get("schema")
    return schema if isinstance(schema, dict) else None


class SchemaChecker:
    def __init__(self) -> None:
        self._validators: OrderedDict[bytes, Any] = OrderedDict()

    def _validator(self, schema: dict[str, Any]) -> Any:
        key = _encode(schema)
        v = self._validators.get(key)
        if v is None:
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise InvalidSchema(f"the request's json_schema is invalid ({exc.validator})") from None
            v = self._validators[key] = cls(schema)
            if len(self._validators) > _MAX_CACHED:
                self._validators.popitem(last=False)
        else:
            self._validators.move_to_end(key)
        return v

    def problem(self, schema: dict[str, Any], answer: str) -> str | None:
        """None when ``answer`` is JSON valid against ``schema``; else what is wrong (no values)."""
        try:
            instance = msgspec.json.decode(answer)
        except msgspec.DecodeError:
            return "the answer is not valid JSON"
        error = jsonschema.exceptions.best_match(self._validator(schema).iter_errors(instance))
        if error is None:
            return None
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        return f"the answer does not match the requested schema: '{error.validator}' failed at {path}"
