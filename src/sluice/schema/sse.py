"""An incremental Server-Sent Events decoder and the few encoders the gateway needs.

``SSEDecoder.feed(bytes)`` returns the complete events found so far; a partial event waits for more
bytes. Handles ``\\n``, ``\\r\\n`` and ``\\r`` line endings (Gemini frames with CRLF), comments, and
multi-line ``data:`` fields. Work is linear in the bytes fed, however they are split: only the new
bytes are searched and rewritten, and an unfinished line is kept as pieces joined once when it
ends. An event (its data, and a line still arriving) may not grow past ``MAX_EVENT_BYTES``: an
upstream that sends one endless line gets a ``bad_response`` error, not the gateway's memory.
"""

from __future__ import annotations

from typing import NamedTuple

from sluice.errors import ProviderError

#: The largest SSE event an upstream may send (a long tool-call argument or an image fits).
MAX_EVENT_BYTES = 16 * 1024 * 1024


class SSEEvent(NamedTuple):
    event: str | None
    data: bytes


class SSEDecoder:
    __slots__ = ("_cr", "_data", "_event", "_pending", "_pending_len", "_provider", "_size")

    def __init__(self, provider: str = "upstream") -> None:
        self._provider = provider
        self._pending: list[bytes] = []  # an unfinished line, in pieces
        self._pending_len = 0
        self._cr = False  # the last feed ended with \r: a \n first in the next one is its pair
        self._event: str | None = None
        self._data: list[bytes] = []
        self._size = 0  # data bytes of the event being read

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._cr:
            self._cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._pending:
            if b"\n" not in chunk:
                self._keep(chunk)
                return []
            self._pending.append(chunk)
            buf = b"".join(self._pending)
            self._pending = []
            self._pending_len = 0
        else:
            buf = chunk
        events = self._lines(buf)
        return events

    def _lines(self, buf: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if not line:
                if self._data or self._event is not None:
                    events.append(SSEEvent(self._event, b"\n".join(self._data)))
                self._event = None
                self._data = []
                self._size = 0
                continue
            if line[0] == 58:  # b":" comment
                continue
            colon = line.find(b":")
            if colon < 0:
                field, value = line, b""
            else:
                field = line[:colon]
                value = line[colon + 1 :]
                if value[:1] == b" ":
                    value = value[1:]
            if field == b"data":
                self._data.append(value)
                self._size += len(value)
            elif field == b"event":
                self._event = value.decode("utf-8", "replace")
        if start < len(buf):
            self._keep(buf[start:] if start else buf)
        elif self._size > MAX_EVENT_BYTES:
            self._too_large()
        return events

    def _keep(self, piece: bytes) -> None:
        self._pending.append(piece)
        self._pending_len += len(piece)
        if self._pending_len + self._size > MAX_EVENT_BYTES:
            self._too_large()

    def _too_large(self) -> None:
        self._pending = []
        self._pending_len = 0
        self._data = []
        self._size = 0
        raise ProviderError(
            "bad_response", f"an SSE event is over {MAX_EVENT_BYTES // (1024 * 1024)} MiB",
            provider=self._provider,
        )  # fmt: skip

    def flush(self) -> list[SSEEvent]:
        """End of stream: return an event left without its blank line, if any."""
        events = self.feed(b"\n\n") if self.pending else []
        self._pending = []
        self._pending_len = 0
        self._cr = False
        return events

    @property
    def pending(self) -> bool:
        return any(p.strip() for p in self._pending) or bool(self._data)


def encode_event(event: str, payload: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"
