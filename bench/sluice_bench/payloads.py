"""Wire bodies shared by the upstreams and the load generators.

The upstream answers are byte-for-byte OpenAI's shapes (chat.completion, chat.completion.chunk with a
trailing usage chunk and ``[DONE]``) so a gateway's decoder does the same work as in production.
"""

from __future__ import annotations

import json

MODEL = "gpt-4o-mini"
UPSTREAM_MODEL = "gpt-4o-mini-2024-07-18"
CREATED = 1_732_000_000
REPLY_TEXT = (
    "Sure! Here is a short summary of the report: revenue grew 12% quarter over quarter, driven by "
    "the new enterprise tier, while churn fell to 1.8%. The main risk is the pending migration of "
    "the billing system, which the team expects to finish before the end of the next quarter."
)
REPLY_WORDS = REPLY_TEXT.split(" ")
PROMPT_TOKENS = 142
COMPLETION_TOKENS = 58

_SYSTEM = (
    "You are a concise assistant for an internal analytics team. Answer in plain English, cite the "
    "figures you were given, and never invent numbers."
)
_USER = (
    "Summarise this quarter's report in three sentences. Revenue: 4.2M (+12% QoQ). Enterprise tier "
    "launched in week 3 and now accounts for 31% of new bookings. Churn: 1.8% (down from 2.4%). Open "
    "risks: billing migration (ETA end of next quarter), two senior hires still open in support."
)


def chat_request(model: str = MODEL, *, stream: bool = False) -> bytes:
    """A realistic client body: system + user + an earlier turn, the usual sampling knobs."""
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": _SYSTEM},
            {"role": "user", "content": "Hi, I will paste the report next."},
            {"role": "assistant", "content": "Go ahead, I am ready."},
            {"role": "user", "content": _USER},
        ],
        "temperature": 0.2,
        "max_tokens": 256,
        "user": "bench-user-42",
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


def _usage() -> dict[str, object]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def chat_completion() -> bytes:
    """A non-streaming ``chat.completion`` exactly as OpenAI serialises it."""
    return _dumps(
        {
            "id": "chatcmpl-BENCH0000000000000000000000001",
            "object": "chat.completion",
            "created": CREATED,
            "model": UPSTREAM_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": " ".join(REPLY_WORDS),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_bench0001",
        }
    ).encode()


def _chunk(choices: list[dict[str, object]], usage: object = None) -> str:
    return _dumps(
        {
            "id": "chatcmpl-BENCH0000000000000000000000002",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": UPSTREAM_MODEL,
            "service_tier": "default",
            "system_fingerprint": "fp_bench0001",
            "choices": choices,
            "usage": usage,
        }
    )


def sse_events(n_content: int) -> list[bytes]:
    """The SSE events of one stream: role chunk, ``n_content`` content chunks, finish, usage, [DONE].

    Each element is one complete event (``data: ...\\n\\n``). The paced upstream sends the role chunk
    and the first content chunk together, then one content chunk per interval.
    """
    words = [REPLY_WORDS[i % len(REPLY_WORDS)] for i in range(n_content)]
    events = [
        _chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )
    ]
    for i, word in enumerate(words):
        text = word if i == 0 else " " + word
        events.append(
            _chunk([{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}])
        )
    events.append(_chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    events.append(_chunk([], _usage()))
    out = [f"data: {e}\n\n".encode() for e in events]
    out.append(b"data: [DONE]\n\n")
    return out


FIXED_STREAM_CHUNKS = 20


def sse_body(n_content: int = FIXED_STREAM_CHUNKS) -> bytes:
    return b"".join(sse_events(n_content))


def models_list() -> bytes:
    return _dumps(
        {
            "object": "list",
            "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "system"}],
        }
    ).encode()
