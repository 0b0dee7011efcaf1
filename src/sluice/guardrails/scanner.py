"""The streaming scanner: output guardrails on an answer that arrives chunk by chunk.

No byte a blocking or redacting guardrail has not passed reaches the caller. Each text channel
(a choice's content, its refusal, each tool call's arguments) keeps back only the tail that could
still grow into a match — the trailing run of entity characters (``bob@exa``, ``123-45-``,
``sk-proj-ab``), or a private key block until its END line — and releases the rest at once, redacted.
A match that spans chunks (an SSN in three pieces) is therefore whole in the window when it is
scanned. A block raises :class:`GuardrailBlocked` before any of the offending text is released. With only
``log`` guardrails nothing is held: the text flows unchanged and the window only counts.
The last ``_CONTEXT`` released characters are kept (in memory only) so look-behind rules still see
what came before the window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from sluice.guardrails.engine import Guard, RequestState
from sluice.guardrails.redact import apply
from sluice.guardrails.verdict import Finding, count
from sluice.schema.chat import ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta

#: A channel holding more than this (a private key block without its END) is released, redacted.
HOLD_CAP = 32 * 1024
_CONTEXT = 32
_CONTENT = -1
_REFUSAL = -2
#: An answer held whole (output_schema on a stream) beyond this is refused.
MAX_HELD_ANSWER = 4 * 1024 * 1024

Key = tuple[int, int]  # (choice index, channel: _CONTENT | _REFUSAL | tool call index)


class _Channel:
    __slots__ = ("left", "pending")

    def __init__(self) -> None:
        self.pending = ""
        self.left = ""


class StreamScanner:
    """Feed each chunk; yield what :meth:`feed` returns; call :meth:`finish` at the end.

    ``validate`` (output_schema): the whole content of choice 0 is held and handed to it before
    release; it raises to block. ``sent`` collects released text per channel (before ``restore``)
    when ``capture`` is set (``restored``: as the caller got it), for the payload log."""

    def __init__(
        self,
        state: RequestState,
        guards: tuple[Guard, ...],
        *,
        validate: Callable[[str], None] | None = None,
        capture: Literal["redacted", "restored"] | None = None,
    ) -> None:
        self._state = state
        self._guards = guards
        self._validate = validate
        self._channels: dict[Key, _Channel] = {}
        self._counts: dict[str, dict[str, int]] = {g.name: {} for g in guards if g.action != "block"}
        self._restore = state.placeholders.restore if state.placeholders.restorable else None
        #: Only ``log`` guardrails: nothing is held back (the text is not changed); the window is
        #: still kept so a match across chunks is counted.
        self._skipped: set[str] = set()
        self._holding = validate is not None or any(g.action != "log" for g in guards)
        self.sent: dict[Key, list[str]] | None = {} if capture else None
        self._capture_restored = capture == "restored"

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        if not chunk.choices:
            return [chunk]
        out: list[ChatChunk] = []
        for choice in chunk.choices:
            self._choice(chunk, choice, out)
        if not _empty(chunk):
            out.append(chunk)
        return out

    def finish(self, template: ChatChunk | None) -> list[ChatChunk]:
        """Release whatever is still held (a stream that ended without a finish_reason)."""
        out: list[ChatChunk] = []
        for key in [k for k, c in self._channels.items() if c.pending]:
            self._flush(template or ChatChunk(choices=[]), key, out)
        return out

    def verdicts(self) -> None:
        """Record what the non-blocking guardrails found (call once, when the stream ends)."""
        for g in self._guards:
            counts = self._counts.get(g.name)
            if counts:
                outcome = "redacted" if g.action == "redact" else "flagged"
                self._state.record(g.verdict("output", outcome, counts=counts))

    def _choice(self, chunk: ChatChunk, choice: ChunkChoice, out: list[ChatChunk]) -> None:
        i, d = choice.index, choice.delta
        final = choice.finish_reason is not None
        touched: list[int] = []
        if d.content:
            touched.append(_CONTENT)
        if d.refusal:
            touched.append(_REFUSAL)
        calls = [tc for tc in d.tool_calls or () if tc.function is not None and tc.function.arguments]
        touched.extend(tc.index for tc in calls)
        # Text held in this choice's other channels came first: release it before this chunk (a
        # channel this chunk touches is finished by its own pass below, pending text first).
        for key in [k for k, c in self._channels.items() if k[0] == i and c.pending and k[1] not in touched]:
            if not (self._validate is not None and key == (0, _CONTENT) and not final):
                self._flush(chunk, key, out)
        if d.content:
            d.content = self._pass((i, _CONTENT), d.content, final)
        if d.refusal:
            d.refusal = self._pass((i, _REFUSAL), d.refusal, final)
        for tc in calls:
            assert tc.function is not None and tc.function.arguments is not None
            tc.function.arguments = self._pass((i, tc.index), tc.function.arguments, final)
        if calls and d.tool_calls is not None:
            kept = [
                tc
                for tc in d.tool_calls
                if tc.id or tc.type or (tc.function and (tc.function.name or tc.function.arguments))
            ]
            d.tool_calls = kept or None

    def _flush(self, like: ChatChunk, key: Key, out: list[ChatChunk]) -> None:
        text = self._pass(key, "", final=True)
        if not text:
            return
        i, channel = key
        if channel == _CONTENT:
            delta = Delta(content=text)
        elif channel == _REFUSAL:
            delta = Delta(refusal=text)
        else:
            delta = Delta(
                tool_calls=[ToolCallDelta(index=channel, function=FunctionCallDelta(arguments=text))]
            )
        choice = ChunkChoice(index=i, delta=delta)
        out.append(ChatChunk(id=like.id, created=like.created, model=like.model, choices=[choice]))

    def _pass(self, key: Key, piece: str, final: bool) -> str:
        """Scan the channel's window with ``piece`` added; return the text now safe to release."""
        c = self._channels.get(key)
        if c is None:
            c = self._channels[key] = _Channel()
        buf = c.pending + piece
        if self._validate is not None and key == (0, _CONTENT):
            if not final:
                c.pending = buf
                if len(buf) > MAX_HELD_ANSWER:
                    self._validate("")  # refuses: too long to hold for validation
                return ""
            self._validate(buf)
        n = len(buf)
        cut = n
        if not final:
            for g in self._guards:
                assert g.detector is not None
                cut = min(cut, g.detector.hold_from(buf))
        if n - cut > HOLD_CAP:
            cut = n
        found = self._scan(c.left, buf)
        for f in sorted((f for _, fs in found for f in fs), key=lambda f: -f.start):
            if f.start < cut < f.end:
                cut = f.start
        redact: list[Finding] = []
        for g, fs in found:
            done = [f for f in fs if f.end <= cut]
            if done and g.action != "block":
                count(done, self._counts[g.name])
                if g.action == "redact":
                    redact.extend(done)
        released = buf[:cut]
        text = apply(released, redact, self._state.placeholders) if self._holding else piece
        c.pending = buf[cut:]
        c.left = (c.left + released)[-_CONTEXT:]
        if self.sent is not None and text and not self._capture_restored:
            self.sent.setdefault(key, []).append(text)
        if self._restore is not None and text:
            text = self._restore(text)
        if self.sent is not None and text and self._capture_restored:
            self.sent.setdefault(key, []).append(text)
        return text

    def _scan(self, left: str, buf: str) -> list[tuple[Guard, list[Finding]]]:
        off = len(left)
        text = left + buf if off else buf
        found: list[tuple[Guard, list[Finding]]] = []
        for g in self._guards:
            assert g.detector is not None
            if g.name in self._skipped:
                continue
            try:
                raw = g.detector.find(text)
            except Exception as exc:  # a detector must never fail open
                err = self._state.failed(g, "output", type(exc).__name__)
                if err is not None:
                    raise err from None
                self._skipped.add(g.name)  # on_error: allow — recorded once, skipped from here on
                continue
            fs = [Finding(max(0, f.start - off), f.end - off, f.entity) for f in raw if f.end > off]
            if fs and g.action == "block":
                raise self._state.blocked(g, "output", count(fs, {}))
            found.append((g, fs))
        return found


def _empty(chunk: ChatChunk) -> bool:
    if chunk.usage is not None or len(chunk.choices) != 1:
        return False
    ch = chunk.choices[0]
    d = ch.delta
    return (
        ch.finish_reason is None and d.role is None and not d.content and not d.refusal
        and not d.tool_calls and not d.reasoning
    )  # fmt: skip
