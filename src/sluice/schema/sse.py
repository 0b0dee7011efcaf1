"""An incremental Server-Sent Events decoder and the few encoders the gateway needs.

``SSEDecoder.feed(bytes)`` returns the complete events found so far; a partial event waits for more
bytes. Handles ``\\n``, ``\\r\\n`` and ``\\r`` line endings (Gemini frames with CRLF), comments, and
multi-line ``data:`` fields. Work per call is linear in the bytes fed.
"""

from __future__ import annotations

from typing import NamedTuple


class SSEEvent(NamedTuple):
    event: str | None
    data: bytes


class SSEDecoder:
    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # A trailing lone \r may be the first half of \r\n: keep it for the next feed.
            keep_cr = buf.endswith(b"\r")
            body = buf[:-1] if keep_cr else buf
            body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            buf = body + b"\r" if keep_cr else body
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
            elif field == b"event":
                self._event = value.decode("utf-8", "replace")
        self._buf = buf[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: return an event left without its blank line, if any."""
        events = self.feed(b"\n\n") if self._buf.strip() or self._data else []
        self._buf = b""
        return events

    @property
    def pending(self) -> bool:
        return bool(self._buf.strip()) or bool(self._data)


def encode_event(event: str, payload: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"
