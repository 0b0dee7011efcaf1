"""The bounds of Sluice's HTTP/1.1 server (``server/protocol.py``), and what every connection of
one listening server shares. docs/security.md lists each limit and what a peer gets past it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sluice.server.framing import RefusalBody, default_refusal

if TYPE_CHECKING:
    from sluice.server.protocol import HttpProtocol
    from sluice.server.services import Services
    from sluice.server.wire import Handler

#: Most bytes a request line plus headers may take; the trailers and the chunk framing of a body
#: (beyond what its data needs) are held to the same bound.
MAX_HEAD_BYTES = 64 * 1024
#: Pipelined requests buffered per connection before reading pauses.
MAX_PIPELINE = 16
#: After ``slow_client_s`` of grace a body must average at least this many bytes a second.
MIN_BODY_RATE = 8 * 1024
#: A refused body is read (and dropped) for at most this long, so the caller can finish sending
#: and read the answer rather than get a reset; then the connection is cut.
LINGER_S = 5.0
#: ... and for at most this long without a byte.
LINGER_IDLE_S = 2.0
#: ... and at most this many bytes beyond ``max_body`` (a refused 11 MB body with the default
#: 10 MiB limit is read to its end).
LINGER_EXTRA_BYTES = 4 * 1024 * 1024
#: A stream yields to the loop after this many writes that did not have to wait.
YIELD_EVERY = 16


class ServerState:
    """What every connection of one listening server shares."""

    def __init__(
        self, services: Services, handler: Handler, *, max_body: int, keepalive_s: float = 75.0,
        slow_client_s: float = 60.0, refusal_body: RefusalBody = default_refusal,
    ) -> None:  # fmt: skip
        self.services = services
        self.handler = handler
        #: Renders the body of the refusals the connection answers itself (431, 413, malformed).
        self.refusal_body = refusal_body
        self.max_body = max_body
        self.keepalive_s = keepalive_s
        self.slow_client_s = slow_client_s
        self.linger_bytes = max_body + LINGER_EXTRA_BYTES
        self.connections: set[HttpProtocol] = set()
        self.idle = asyncio.Event()  # set whenever no connection is open

    @property
    def draining(self) -> bool:
        """One flag for the routes (new requests get 503) and the connections (answers close)."""
        return self.services.draining

    def sweep(self, now: float) -> None:
        """Close connections idle past the keep-alive timeout, callers too slow to send a request
        they have started (slowloris) or to read their answer, and lingering closes that are over."""
        for conn in list(self.connections):
            conn.expire(now)
