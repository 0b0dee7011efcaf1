from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.config.guardrails import PiiGuardrail, SecretsGuardrail
from sluice.errors import GuardrailBlocked
from sluice.guardrails.engine import RequestState, build_guard, build_plan
from sluice.guardrails.redact import apply
from sluice.guardrails.scanner import StreamScanner
from sluice.schema.chat import ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta

GUARDS = {
    "pii": build_guard("pii", PiiGuardrail(action="redact")),
    "secrets": build_guard("secrets", SecretsGuardrail(action="redact")),
    "no-secrets": build_guard("no-secrets", SecretsGuardrail(action="block")),
    "pii-log": build_guard("pii-log", PiiGuardrail(action="log")),
}
TEXT = (
    "Reach bob@example.com or +1 415 555 0100; SSN 123-45-6789, key sk-proj-abcdefghijklmnopqrstuvwxyz0123 ok. "
    "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, host 10.0.0.1, token eyJhbGciOiJIUzI1NiJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U done."
)


def scanner(*names: str) -> tuple[StreamScanner, RequestState]:
    plan = build_plan(names, GUARDS)
    state = RequestState(plan)
    return StreamScanner(state, plan.output_text), state


def content(text: str, finish: str | None = None) -> ChatChunk:
    return ChatChunk(id="c", choices=[ChunkChoice(delta=Delta(content=text), finish_reason=finish)])


def run(sc: StreamScanner, pieces: list[str]) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        out.extend(c.choices[0].delta.content or "" for c in sc.feed(content(piece)) if c.choices)
    out.extend(c.choices[0].delta.content or "" for c in sc.feed(content("", "stop")) if c.choices)
    return out


def test_an_ssn_split_across_three_chunks_is_redacted_and_never_released_raw() -> None:
    sc, state = scanner("pii")
    out = run(sc, ["my SSN is 123", "-45-", "6789 thanks"])
    assert "".join(out) == "my SSN is [SSN_1] thanks"
    assert not any(d in piece for piece in out for d in ("123", "45", "6789"))
    sc.verdicts()
    assert state.verdicts[0].counts == {"ssn": 1} and state.verdicts[0].outcome == "redacted"


def test_text_flows_at_once_when_nothing_can_grow_into_a_match() -> None:
    sc, _ = scanner("pii", "secrets")
    out = sc.feed(content("Hello there, "))
    assert [c.choices[0].delta.content for c in out] == ["Hello there, "]


def test_a_key_split_across_chunks_blocks_before_any_of_it_is_released() -> None:
    sc, state = scanner("no-secrets")
    released = run_until_blocked(sc, ["your key: sk-proj-", "abcdefghij", "klmnopqrstuvwxyz0123 done"])
    assert "sk-proj" not in "".join(released)
    assert state.verdicts[0].outcome == "blocked" and state.verdicts[0].counts == {"openai_key": 1}


def run_until_blocked(sc: StreamScanner, pieces: list[str]) -> list[str]:
    released: list[str] = []
    with pytest.raises(GuardrailBlocked) as err:
        for piece in pieces:
            released.extend(c.choices[0].delta.content or "" for c in sc.feed(content(piece)))
    assert err.value.status == 502 and err.value.guardrail == "no-secrets"
    return released


def test_tool_call_arguments_are_a_channel_of_their_own() -> None:
    sc, _ = scanner("pii")
    first = ToolCallDelta(
        index=0, id="call_1", type="function", function=FunctionCallDelta(name="f", arguments="")
    )
    chunks = [ChatChunk(choices=[ChunkChoice(delta=Delta(tool_calls=[first]))])]
    for part in ['{"ssn": "123-', "45-67", '89"}']:
        delta = Delta(tool_calls=[ToolCallDelta(index=0, function=FunctionCallDelta(arguments=part))])
        chunks.append(ChatChunk(choices=[ChunkChoice(delta=delta)]))
    chunks.append(ChatChunk(choices=[ChunkChoice(delta=Delta(), finish_reason="tool_calls")]))
    args = ""
    for chunk in chunks:
        for out in sc.feed(chunk):
            for tc in out.choices[0].delta.tool_calls or []:
                args += tc.function.arguments or "" if tc.function else ""
    assert args == '{"ssn": "[SSN_1]"}'


def test_restore_puts_back_a_placeholder_split_across_chunks() -> None:
    plan = build_plan(["pii"], GUARDS)
    state = RequestState(plan)
    state.placeholders.placeholder("email", "bob@example.com", restore=True)
    sc = StreamScanner(state, plan.output_text)
    assert "".join(run(sc, ["write to [EMA", "IL_1] now"])) == "write to bob@example.com now"


def test_a_private_key_block_is_held_until_its_end_line() -> None:
    sc, _ = scanner("secrets")
    out = run(
        sc,
        [
            "here: -----BEGIN RSA PRIVATE",
            " KEY-----\nMIIEpAIBAAKCAQEA\n",
            "-----END RSA PRIVATE KEY----- bye",
        ],
    )
    assert "".join(out) == "here: [PRIVATE_KEY_1] bye" and "MIIE" not in "".join(out)


def test_log_counts_without_changing_or_holding_the_text() -> None:
    sc, state = scanner("pii-log")
    out = run(sc, ["mail bob@", "example.com"])
    assert out[:2] == ["mail bob@", "example.com"]  # each piece at once, nothing held
    assert "".join(out) == "mail bob@example.com"
    sc.verdicts()
    assert state.verdicts[0].outcome == "flagged" and state.verdicts[0].counts == {"email": 1}


def test_usage_only_chunks_pass_and_empty_ones_are_dropped() -> None:
    sc, _ = scanner("pii")
    usage_chunk = ChatChunk(choices=[])
    assert sc.feed(usage_chunk) == [usage_chunk]
    assert sc.feed(content("123-")) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(TEXT) - 1), max_size=12, unique=True))
def test_any_split_gives_the_same_text_as_redacting_it_whole(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(TEXT)]
    pieces = [TEXT[a:b] for a, b in itertools.pairwise(bounds)]
    sc, state = scanner("pii", "secrets")
    streamed = "".join(run(sc, pieces))
    whole_state = RequestState(state.plan)
    findings = [f for g in state.plan.output_text if g.detector for f in g.detector.find(TEXT)]
    assert streamed == apply(TEXT, findings, whole_state.placeholders)
    for raw in (
        "bob@example.com",
        "123-45-6789",
        "sk-proj-abcdefghijklmnopqrstuvwxyz0123",
        "+1 415 555 0100",
    ):
        assert raw not in streamed


class _Broken:
    def find(self, text: str) -> list[object]:
        raise RuntimeError("boom")

    def hold_from(self, text: str) -> int:
        return len(text)


def test_a_failing_detector_fails_closed_mid_stream_unless_allowed() -> None:
    from dataclasses import replace

    from sluice.errors import GuardrailUnavailable

    broken = replace(GUARDS["pii"], detector=_Broken())  # type: ignore[arg-type]
    plan = build_plan(["pii"], {"pii": broken})
    state = RequestState(plan)
    with pytest.raises(GuardrailUnavailable):
        StreamScanner(state, plan.output_text).feed(content("hello "))
    allowed = replace(broken, allow_on_error=True)
    plan = build_plan(["pii"], {"pii": allowed})
    state = RequestState(plan)
    assert "".join(run(StreamScanner(state, plan.output_text), ["hello ", "world"])) == "hello world"
    assert [v.outcome for v in state.verdicts] == ["error"]
