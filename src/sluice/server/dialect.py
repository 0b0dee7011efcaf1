"""The unit of an API the gateway speaks: a :class:`Dialect`.

One object per API (OpenAI chat completions, Anthropic messages, and any later one such as
OpenAI's Responses API). A dialect turns its request body into the canonical
:class:`~sluice.schema.chat.ChatRequest`, renders the canonical answer, encodes a canonical chunk
stream as its own event stream, and renders every error on its paths. The chat handler and the
stream writer (``server/chat.py``) are the same for every dialect; the dispatcher renders errors
once, in the dialect of the path (``prefixes``), 404, 405, 413 and 431 included.

Adding an API = one dialect object, one ``*_routes`` module declaring its routes with
``RouteTable(dialect)``, and one line in ``app.route_tables``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sluice.errors import SluiceError
from sluice.schema.chat import ChatChunk, ChatRequest, ChatResponse
from sluice.schema.context import Dialect as DialectName
from sluice.schema.context import RequestContext

if TYPE_CHECKING:
    from sluice.server.wire import Request


class StreamEncoder(Protocol):
    """Canonical chunks → the dialect's event stream, for one response. Stateful: an API whose
    events are not one per chunk (Anthropic's content blocks, Responses' output items) keeps what
    it needs here."""

    def feed(self, chunk: ChatChunk) -> bytes:
        """The bytes to send for this chunk (may be empty)."""
        ...

    def finish(self) -> bytes:
        """The stream ended normally: the closing events (``[DONE]``, ``message_stop`` ...)."""
        ...

    def error(self, exc: SluiceError) -> bytes:
        """The stream failed after its head was sent: an error event, and nothing that could make
        the stream look complete."""
        ...


class Dialect(Protocol):
    """One API. ``prefixes``: the paths this dialect owns (a path is owned by the longest prefix
    that matches it whole or up to a ``/``); every error answered on them is in its format."""

    name: DialectName
    prefixes: tuple[str, ...]

    def error_body(self, exc: SluiceError) -> bytes: ...

    async def parse_chat(self, request: Request, ctx: RequestContext, body: bytes) -> ChatRequest:
        """The request body → the canonical request. Async so a dialect may look things up
        (a stored conversation, for instance) with ``request.services`` and ``ctx.principal``."""
        ...

    def render_response(self, resp: ChatResponse, ctx: RequestContext) -> bytes: ...

    def stream_encoder(self, ctx: RequestContext) -> StreamEncoder: ...


def owns(prefix: str, path: str) -> bool:
    """``/v1/messages`` owns ``/v1/messages`` and ``/v1/messages/batches``, not ``/v1/messagesx``."""
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or prefix.endswith("/") or path[len(prefix)] == "/"


class DialectMap:
    """Which dialect a path's errors are rendered in: the longest owning prefix, else the default."""

    def __init__(self, default: Dialect, dialects: list[Dialect]) -> None:
        self.default = default
        pairs = [(p, d) for d in [default, *dialects] for p in d.prefixes]
        self._prefixes = sorted(pairs, key=lambda pd: len(pd[0]), reverse=True)

    def __call__(self, path: str) -> Dialect:
        for prefix, dialect in self._prefixes:
            if owns(prefix, path):
                return dialect
        return self.default
