"""What RFC 9112 asks of a request head beyond what llhttp checks, and the raw answers the
connection sends when there is no request object to answer with (the head could not be parsed).

llhttp refuses ambiguous framing (Content-Length with Transfer-Encoding, bad chunk sizes, a
non-chunked final coding); these are the rules it leaves to the server:

- HTTP/1.1 without exactly one ``Host``, or more than one ``Host`` at all: 400 (RFC 9112 §3.2);
- ``Transfer-Encoding`` in an HTTP/1.0 request: 400 and close, the framing is faulty (§6.1);
- a transfer coding other than ``chunked``: 501 (RFC 9112 §6.1, RFC 9110 §15.6.2);
- a major version other than 1: 505 (RFC 9110 §15.6.6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from sluice.server.wire import encode_head

#: Transfer codings the server decodes.
_KNOWN_CODINGS = frozenset({"chunked"})


class Refused(Exception):
    """A request head the server will not answer normally: ``status`` and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_head(version: str, headers: dict[str, str], hosts: int) -> None:
    """Raise :class:`Refused` for a head that breaks a rule llhttp does not enforce."""
    if version not in ("1.0", "1.1"):
        raise Refused(505, f"HTTP/{version} is not supported: send HTTP/1.1")
    if hosts > 1:
        raise Refused(400, "more than one Host header")
    if hosts == 0 and version == "1.1":
        raise Refused(400, "an HTTP/1.1 request needs a Host header")
    te = headers.get("transfer-encoding")
    if te is None:
        return
    if version == "1.0":
        raise Refused(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request")
    codings = [c.strip().lower() for c in te.split(",") if c.strip()]
    if codings.count("chunked") != 1 or codings[-1] != "chunked":
        raise Refused(400, "Transfer-Encoding must end with chunked, applied once")
    unknown = [c for c in codings if c not in _KNOWN_CODINGS]
    if unknown:
        raise Refused(501, f"transfer coding '{unknown[0][:40]}' is not supported")


def parse_error_status(message: str) -> int:
    """The status for an llhttp parse error: 505 for a version it does not know, else 400."""
    return 505 if "HTTP version" in message else 400


def refusal(status: int, body: bytes) -> bytes:
    """A whole ``connection: close`` answer; ``body`` is the error in the path's dialect (the
    dispatcher renders it: see :data:`RefusalBody`)."""
    head = encode_head(
        status, {"content-type": "application/json", "x-sluice-error-source": "gateway"},
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body),
    )  # fmt: skip
    return head + body


#: (request target as far as it arrived, status, message) -> the error body, in the path's dialect.
RefusalBody: TypeAlias = Callable[[str, int, str], bytes]


def default_refusal(target: str, status: int, message: str) -> bytes:
    """The refusal body when the server is given no dialect-aware renderer: Anthropic's format
    on ``/v1/messages``, else OpenAI's."""
    text = message.replace("\\", "\\\\").replace('"', "'").encode("ascii", "replace")
    if target.startswith("/v1/messages"):
        return b'{"type":"error","error":{"type":"invalid_request_error","message":"%s"}}' % text
    return b'{"error":{"message":"%s","type":"invalid_request_error","code":null,"param":null}}' % text
