"""AWS event-stream framing (``application/vnd.amazon.eventstream``), decoded incrementally.

A message is: total length (u32), headers length (u32), prelude CRC32, headers, payload,
message CRC32 (big-endian). Headers are name (u8 length), type (u8) and a typed value; Bedrock
sends strings (type 7). Both CRCs are checked: a corrupt frame is an error, never guessed at.
``encode_message`` is the inverse, for fake upstreams and tests.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

_PRELUDE = struct.Struct(">III")
_MAX_MESSAGE = 16 * 1024 * 1024


class EventStreamError(ValueError):
    """The bytes are not a valid event stream."""


class Frame(NamedTuple):
    headers: dict[str, str]
    payload: bytes


class EventStreamDecoder:
    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 12:
            total, headers_len, prelude_crc = _PRELUDE.unpack_from(self._buf)
            if zlib.crc32(self._buf[:8]) != prelude_crc:
                raise EventStreamError("prelude checksum mismatch")
            if total > _MAX_MESSAGE or total < 16 + headers_len:
                raise EventStreamError(f"invalid message length {total}")
            if len(self._buf) < total:
                break
            message = bytes(self._buf[:total])
            del self._buf[:total]
            (crc,) = struct.unpack_from(">I", message, total - 4)
            if zlib.crc32(message[:-4]) != crc:
                raise EventStreamError("message checksum mismatch")
            frames.append(Frame(_headers(message[12 : 12 + headers_len]), message[12 + headers_len : -4]))
        return frames

    @property
    def pending(self) -> bool:
        return bool(self._buf)


def _headers(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(raw):
        n = raw[i]
        name = raw[i + 1 : i + 1 + n].decode()
        i += 1 + n
        kind = raw[i]
        i += 1
        if kind == 7 or kind == 6:  # string / bytes
            (length,) = struct.unpack_from(">H", raw, i)
            out[name] = raw[i + 2 : i + 2 + length].decode("utf-8", "replace")
            i += 2 + length
        elif kind in (0, 1):  # bool true / false
            out[name] = "true" if kind == 0 else "false"
        else:
            size = {2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}.get(kind)
            if size is None:
                raise EventStreamError(f"unknown header type {kind}")
            i += size
    return out


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    raw = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
        for k, v in headers.items()
    )
    total = 12 + len(raw) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw + payload
    return head + struct.pack(">I", zlib.crc32(head))
