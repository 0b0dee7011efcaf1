"""TLS on the listener (``server.tls``): one server context, whose certificate a reload replaces."""

from __future__ import annotations

import ssl

from sluice.config.ops import TlsConfig
from sluice.errors import ConfigError


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the policy's certificate chain and key (ConfigError if
    they cannot be read or do not match)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    load_certificate(ctx, tls)
    return ctx


def load_certificate(ctx: ssl.SSLContext, tls: TlsConfig) -> None:
    """(Re)load the certificate: connections accepted afterwards are served the new one."""
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
    except FileNotFoundError as exc:
        raise ConfigError(f"cannot read TLS file {exc.filename} - at `$.server.tls`") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot load the TLS certificate and key: {exc} - at `$.server.tls`") from None
