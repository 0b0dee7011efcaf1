"""Closing the listener: connections the kernel queued are still accepted; new attempts are ignored
(their connect times out, so a balancer tries elsewhere) rather than reset after they sent."""

from __future__ import annotations

import socket
import sys
import types

import pytest

from sluice.server.listener import refuse_new_connections

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket filters are Linux's")


def test_queued_connections_survive_and_new_ones_are_ignored() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    addr = listener.getsockname()
    queued = socket.create_connection(addr, timeout=2)  # completed by the kernel, not accepted yet
    assert refuse_new_connections(types.SimpleNamespace(sockets=[listener]))  # type: ignore[arg-type]
    late = socket.socket()
    late.settimeout(0.5)
    with pytest.raises(TimeoutError):  # the SYN is dropped: no connection, no reset
        late.connect(addr)
    late.close()
    conn, _ = listener.accept()  # the queued one is still there
    queued.sendall(b"ping")
    assert conn.recv(4) == b"ping"
    conn.close()
    queued.close()
    listener.close()
