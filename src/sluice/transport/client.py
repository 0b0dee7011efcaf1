"""The only code that opens connections to upstream providers.

One keep-alive pool per (provider, host), each sized by the provider's ``max_connections`` (a
low default cap would silently queue requests under load). Requests go out over the lean HTTP/1.1
client in ``http1.py``. Redirects are never followed: the upstream URL comes from the policy alone.
Network failures become :class:`ProviderError` with kind ``connection`` or ``timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from sluice.errors import ProviderError
from sluice.schema.upstream import UpstreamRequest, UpstreamResponse
from sluice.transport.http1 import BadResponse, ConnectionFailed, HostPool, Response

#: Largest non-streamed upstream body the gateway will read (protects memory).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: A stream's bytes reach its decoder at most this many at a time (a 256 KiB read of a fast
#: upstream is thousands of events; decoding them at one go would hold the loop for milliseconds).
_SLICE = 16 * 1024
#: Largest error body read from a stream that failed before its first event.
MAX_ERROR_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PoolSettings:
    max_connections: int = 1000
    connect_timeout_s: float = 10.0


@dataclass(slots=True)  # made per request: frozen would cost a setattr per field
class Deadline:
    """Per-attempt time limits. ``first_byte_s`` bounds the wait for response headers (and, for
    streams, the first body bytes); ``idle_s`` bounds the gap between stream chunks."""

    total_s: float
    first_byte_s: float | None = None
    idle_s: float | None = None


class UpstreamStream:
    """An open streaming response. Iterate ``chunks()``; always ``close()`` (also on cancel)."""

    def __init__(self, resp: Response, provider: str, idle_s: float | None) -> None:
        self.status = resp.status
        self.headers = resp.headers
        self._resp = resp
        self._provider = provider
        self._idle_s = idle_s

    async def chunks(self) -> AsyncIterator[bytes]:
        resp = self._resp
        try:
            while True:
                if self._idle_s is None:
                    data = await resp.next_chunk()
                else:
                    async with asyncio.timeout(self._idle_s):
                        data = await resp.next_chunk()
                if not data:
                    return
                if len(data) <= _SLICE:
                    yield data
                else:  # a burst: decoded a slice at a time, so the loop is never held for long
                    for i in range(0, len(data), _SLICE):
                        yield data[i : i + _SLICE]
        except TimeoutError:
            raise ProviderError(
                "timeout", f"the stream stalled for more than {self._idle_s:g}s", provider=self._provider
            ) from None
        except BadResponse as exc:
            raise ProviderError("bad_response", str(exc), provider=self._provider) from None
        except ConnectionFailed as exc:
            raise ProviderError(
                "connection", f"the stream was cut ({exc})", provider=self._provider
            ) from None

    async def read_all(self, limit: int = MAX_ERROR_BYTES) -> bytes:
        """The whole body (an error answer's), at most ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                self.close()
                raise ProviderError("bad_response", "response body too large", provider=self._provider)
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        self._resp.close()


@dataclass(frozen=True, slots=True)
class _Endpoint:
    pool_key: tuple[str, str, str, int]
    path: str


class Transport:
    def __init__(self) -> None:
        self._pools: dict[tuple[str, str, str, int], HostPool] = {}
        self._settings: dict[str, PoolSettings] = {}
        self._endpoints: dict[tuple[str, str], _Endpoint] = {}

    def configure(self, provider: str, settings: PoolSettings) -> None:
        self._settings[provider] = settings

    def _endpoint(self, provider: str, url: str) -> _Endpoint:
        key = (provider, url)
        ep = self._endpoints.get(key)
        if ep is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ProviderError(
                    "bad_request", f"unsupported upstream URL scheme {parts.scheme!r}", provider=provider
                )
            port = parts.port or (443 if parts.scheme == "https" else 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            ep = _Endpoint((provider, parts.scheme, parts.hostname, port), path)
            if len(self._endpoints) < 10_000:  # URLs come from the policy; bound it regardless
                self._endpoints[key] = ep
        return ep

    def _pool(self, ep: _Endpoint) -> HostPool:
        pool = self._pools.get(ep.pool_key)
        if pool is None:
            provider, scheme, host, port = ep.pool_key
            settings = self._settings.get(provider, PoolSettings())
            pool = HostPool(
                scheme,
                host,
                port,
                limit=settings.max_connections,
                connect_timeout_s=settings.connect_timeout_s,
            )
            self._pools[ep.pool_key] = pool
        return pool

    async def _open(self, req: UpstreamRequest) -> Response:
        ep = self._endpoint(req.provider, req.url)
        pool = self._pool(ep)
        head = _request_head(req.method, ep.path, pool.host_header, req.headers, len(req.body))
        try:
            resp = await pool.request(head, req.body)
        except BadResponse as exc:
            raise ProviderError("bad_response", str(exc), provider=req.provider) from None
        except ConnectionFailed as exc:
            raise ProviderError("connection", str(exc), provider=req.provider) from None
        if 300 <= resp.status < 400:
            # Never followed: the upstream URL comes from the policy alone.
            resp.close()
            raise ProviderError(
                "bad_response", f"upstream redirected (HTTP {resp.status}, not followed)",
                provider=req.provider, upstream_status=resp.status,
            )  # fmt: skip
        return resp

    async def send(self, req: UpstreamRequest, deadline: Deadline) -> UpstreamResponse:
        """Send a request and read the whole body (``deadline.total_s`` covers both)."""
        resp: Response | None = None
        try:
            async with asyncio.timeout(deadline.total_s):
                resp = await self._open(req)
                body = await _read_limited(resp, req.provider)
        except TimeoutError:
            if resp is not None:
                resp.close()
            raise ProviderError("timeout", "no complete response in time", provider=req.provider) from None
        except BadResponse as exc:
            raise ProviderError("bad_response", str(exc), provider=req.provider) from None
        except ConnectionFailed as exc:
            raise ProviderError("connection", f"response cut ({exc})", provider=req.provider) from None
        except BaseException:
            if resp is not None:
                resp.close()
            raise
        return UpstreamResponse(resp.status, resp.headers, body)

    async def open_stream(self, req: UpstreamRequest, deadline: Deadline) -> UpstreamStream:
        """Send a streaming request and return once the status line and headers arrived."""
        try:
            async with asyncio.timeout(deadline.first_byte_s):
                resp = await self._open(req)
        except TimeoutError:
            raise ProviderError("timeout", "no response in time", provider=req.provider) from None
        return UpstreamStream(resp, req.provider, deadline.idle_s)

    async def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()


def _request_head(method: str, path: str, host: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"{method} {path} HTTP/1.1\r\nhost: {host}\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {length}\r\n\r\n")
    return "".join(lines).encode("latin-1")


async def _read_limited(resp: Response, provider: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    while data := await resp.next_chunk():
        size += len(data)
        if size > MAX_RESPONSE_BYTES:
            resp.close()
            raise ProviderError("bad_response", "response body too large", provider=provider)
        parts.append(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)
