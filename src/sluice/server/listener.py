"""Closing a listener without resetting the connections in its accept queue.

Closing a listening socket resets every connection the kernel has completed but the server has
not accepted yet: the load balancer has already sent a request on it, gets a reset, and cannot
resend a POST to another replica (nginx answers 502). So the drain first makes the listener
ignore new connection attempts (a socket filter that drops pure SYNs: the balancer's connect
times out and it tries the next replica, nothing having been sent), lets the loop accept what is
queued, and only then closes it. Linux only; elsewhere the listener is simply closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import socket
import struct
import sys

log = logging.getLogger("sluice.server")

SO_ATTACH_FILTER = 26
#: How long the loop keeps accepting what was queued before the listener closes.
ACCEPT_FLUSH_S = 0.05

# Classic BPF, run on each packet reaching the listener, from its TCP header: load the flags
# byte; SYN without ACK (a new connection attempt) -> drop; anything else (the handshake's last
# ACK of a connection already on its way into the queue) -> keep.
_DROP_SYN = (
    (0x30, 0, 0, 13),  # ldb [13]
    (0x54, 0, 0, 0x12),  # and #(SYN|ACK)
    (0x15, 0, 1, 0x02),  # jeq #SYN ? next : keep
    (0x06, 0, 0, 0),  # ret #0: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: keep
)


def refuse_new_connections(server: asyncio.AbstractServer) -> bool:
    """Drop new connection attempts on every listening socket of ``server``; True if done."""
    if not sys.platform.startswith("linux"):
        return False
    program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in _DROP_SYN))
    fprog = struct.pack("HL", len(_DROP_SYN), ctypes.addressof(program))  # the kernel copies it
    done = False
    for sock in getattr(server, "sockets", None) or ():
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            done = True
        except OSError as exc:
            log.warning("cannot stop new connections before closing the listener: %s", exc)
    return done


async def close_listener(server: asyncio.AbstractServer) -> None:
    """Stop taking connections without resetting those the kernel already queued."""
    if refuse_new_connections(server):
        await asyncio.sleep(ACCEPT_FLUSH_S)
    with contextlib.suppress(Exception):
        server.close()
