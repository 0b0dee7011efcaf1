"""The canonical chat request, response and stream chunk.

The canonical shape is OpenAI's Chat Completions shape, because it is what most callers and most
upstreams already speak; other dialects and providers translate to and from it. Structs are
``msgspec`` structs: decoding and encoding them costs microseconds, which keeps per-chunk work cheap.

``JsonObject`` marks the few places where the gateway carries opaque JSON it does not interpret
(a tool's JSON schema, ``logit_bias``, unknown request fields for OpenAI-compatible upstreams).
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import msgspec

JsonObject: TypeAlias = dict[str, Any]
UNSET = msgspec.UNSET
UnsetType = msgspec.UnsetType
_RAW_NULL = msgspec.Raw(b"null")


class _S(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


# ---------------------------------------------------------------- message content parts


class TextPart(_S, tag="text", tag_field="type"):
    text: str
    #: Anthropic prompt-caching marker, carried through so translators can place it.
    cache_control: JsonObject | None = None


class ImageUrl(_S):
    url: str
    detail: str | None = None


class ImagePart(_S, tag="image_url", tag_field="type"):
    image_url: ImageUrl


class InputAudio(_S):
    data: str
    format: str


class AudioPart(_S, tag="input_audio", tag_field="type"):
    input_audio: InputAudio


class FileRef(_S):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(_S, tag="file", tag_field="type"):
    file: FileRef


class RefusalPart(_S, tag="refusal", tag_field="type"):
    refusal: str


ContentPart: TypeAlias = TextPart | ImagePart | AudioPart | FilePart | RefusalPart


# ---------------------------------------------------------------- tools


class FunctionCall(_S):
    name: str
    #: A JSON *string*, as OpenAI sends it.
    arguments: str


class ToolCall(msgspec.Struct, kw_only=True):
    # Not omit_defaults: ``type`` must always be written, even though it is the default.
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class FunctionDef(_S):
    name: str
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, kw_only=True):
    function: FunctionDef
    type: Literal["function"] = "function"


class ToolChoiceFunction(_S):
    name: str


class NamedToolChoice(msgspec.Struct, kw_only=True):
    function: ToolChoiceFunction
    type: Literal["function"] = "function"


ToolChoice: TypeAlias = Literal["none", "auto", "required"] | NamedToolChoice


# ---------------------------------------------------------------- request


class Message(_S):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    #: Opaque reasoning state some providers need back unchanged on the next turn
    #: (Anthropic thinking blocks with signatures, Gemini thought signatures). JSON, not interpreted.
    reasoning: list[JsonObject] | None = None

    def text(self) -> str:
        """The message's text content, parts joined (images and audio skipped)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class StreamOptions(_S):
    include_usage: bool | None = None


class ResponseFormat(_S):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonObject | None = None


class ChatRequest(_S):
    model: str
    messages: list[Message]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    metadata: dict[str, str] | None = None
    reasoning_effort: str | None = None
    #: Request fields the gateway does not model; forwarded as-is to OpenAI-compatible upstreams.
    extra_body: JsonObject | None = None

    def output_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


# ---------------------------------------------------------------- usage


class PromptTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    #: Of ``cache_write_tokens``, those written for an hour (Anthropic prices them apart).
    cache_write_1h_tokens: int = 0


class CompletionTokensDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int = 0


class Usage(msgspec.Struct, kw_only=True):
    """OpenAI-style usage: ``prompt_tokens`` *includes* cache reads and cache writes."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        d = self.prompt_tokens_details
        return d.cached_tokens if d is not None else 0

    @property
    def cache_write_tokens(self) -> int:
        d = self.prompt_tokens_details
        return d.cache_write_tokens if d is not None else 0

    @property
    def cache_write_1h_tokens(self) -> int:
        d = self.prompt_tokens_details
        return d.cache_write_1h_tokens if d is not None else 0

    @property
    def reasoning_tokens(self) -> int:
        d = self.completion_tokens_details
        return d.reasoning_tokens if d is not None else 0


FinishReason: TypeAlias = str  # stop | length | tool_calls | content_filter | function_call


# ---------------------------------------------------------------- response


class ResponseMessage(msgspec.Struct, kw_only=True):
    """``content`` and ``refusal`` are always written (null when absent), as OpenAI's schema
    requires; ``tool_calls`` and ``reasoning`` are omitted when absent (the schema does not allow
    null there), so None given for them is turned into UNSET."""

    content: str | None = None
    role: Literal["assistant"] = "assistant"
    refusal: str | None = None
    tool_calls: list[ToolCall] | UnsetType | None = UNSET
    #: Opaque reasoning state (see Message.reasoning).
    reasoning: list[JsonObject] | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        if self.tool_calls is None:
            self.tool_calls = UNSET
        if self.reasoning is None:
            self.reasoning = UNSET


class Choice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: ResponseMessage
    finish_reason: FinishReason | None = None
    logprobs: msgspec.Raw | None = None


class ChatResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str = ""
    object: Literal["chat.completion"] = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


# ---------------------------------------------------------------- stream


class FunctionCallDelta(_S):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_S):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class Delta(_S):
    role: Literal["assistant"] | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    reasoning: list[JsonObject] | None = None


class ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: Delta
    #: Always written (null until the last chunk), as OpenAI's schema requires.
    finish_reason: FinishReason | None = None
    #: Omitted unless present: the schema does not allow the ``null`` upstreams often send.
    logprobs: msgspec.Raw | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.logprobs is not UNSET and self.logprobs == _RAW_NULL:
            self.logprobs = UNSET


class ChatChunk(msgspec.Struct, kw_only=True, omit_defaults=True):
    # Lenient defaults: some OpenAI-compatible servers (Azure's first chunk) send empty values.
    id: str = ""
    object: str = "chat.completion.chunk"  # Azure's filter-report chunk sends ""
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
