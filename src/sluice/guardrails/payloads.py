"""``logging.payloads``: request and response bodies for the request record.

``redacted`` runs every PII entity and the secrets detector over every string of the body
(whatever the route's own guardrails and actions), so nothing raw reaches the database, the spool
file or a log; ``full`` keeps the bodies as the caller sent them and as the caller received them.
Bodies are capped at :data:`MAX_BODY_CHARS` characters.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sluice.config.guardrails import PayloadMode
from sluice.guardrails.detector import Detector
from sluice.guardrails.redact import Placeholders, apply
from sluice.guardrails.scanner import Key

MAX_BODY_CHARS = 64 * 1024
_TRUNCATED = "…[truncated]"
_encode = msgspec.json.Encoder().encode


class PayloadLog:
    def __init__(self, mode: PayloadMode, detectors: tuple[Detector, ...]) -> None:
        self.mode = mode
        self._detectors = detectors

    @property
    def redacted(self) -> bool:
        return self.mode == "redacted"

    def body(self, obj: object, ph: Placeholders) -> str:
        """``obj`` (a request or answer struct) as capped JSON, redacted unless ``full``."""
        data = msgspec.to_builtins(obj)
        if self.redacted:
            data = self._walk(data, ph)
        text = _encode(data).decode()
        return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + _TRUNCATED

    def streamed(self, sent: dict[Key, list[str]], ph: Placeholders) -> str:
        choices: dict[int, dict[str, Any]] = {}
        for (i, channel), parts in sorted(sent.items()):
            choice = choices.setdefault(i, {"index": i})
            text = "".join(parts)
            if channel == -1:
                choice["content"] = text
            elif channel == -2:
                choice["refusal"] = text
            else:
                choice.setdefault("tool_calls", []).append({"index": channel, "arguments": text})
        return self.body({"stream": True, "choices": list(choices.values())}, ph)

    def _walk(self, value: Any, ph: Placeholders) -> Any:
        if isinstance(value, str):
            return self._redact(value, ph)
        if isinstance(value, list):
            return [self._walk(v, ph) for v in value]
        if isinstance(value, dict):
            return {k: self._walk(v, ph) for k, v in value.items()}
        return value

    def _redact(self, text: str, ph: Placeholders) -> str:
        findings = [f for d in self._detectors for f in d.find(text)]
        return apply(text, findings, ph) if findings else text
