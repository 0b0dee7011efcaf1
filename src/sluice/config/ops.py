"""Policy keys for running the gateway in production: TLS on the listener."""

from __future__ import annotations

import msgspec


class TlsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """PEM files for the listener; read again on every policy reload (a renewed certificate is
    served to new connections without a restart)."""

    cert: str
    key: str
