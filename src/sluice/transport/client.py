"""Pooled aiohttp client: the only code that opens connections to upstream providers.

One ``ClientSession`` per configured provider, so each provider's pool is sized by its own
``max_connections`` (aiohttp's default cap of 100 would silently queue requests under load).
Redirects are never followed: the upstream URL comes from the policy file alone.
Network failures become :class:`ProviderError` with kind ``connection`` or ``timeout``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from sluice.errors import ProviderError
from sluice.schema.upstream import UpstreamRequest, UpstreamResponse

#: Largest non-streamed upstream body the gateway will read (protects memory).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PoolSettings:
    max_connections: int = 1000
    connect_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Deadline:
    """Per-attempt time limits. ``first_byte_s`` bounds the wait for response headers (and, for
    streams, the first body bytes); ``idle_s`` bounds the gap between stream chunks."""

    total_s: float
    first_byte_s: float | None = None
    idle_s: float | None = None


class UpstreamStream:
    """An open streaming response. Iterate ``chunks()``; always ``close()`` (also on cancel)."""

    def __init__(self, resp: aiohttp.ClientResponse, provider: str, idle_s: float | None) -> None:
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.headers.items()}
        self._resp = resp
        self._provider = provider
        self._idle_s = idle_s

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._resp.content
        try:
            while True:
                if self._idle_s is None:
                    data = await content.readany()
                else:
                    data = await asyncio.wait_for(content.readany(), self._idle_s)
                if not data:
                    return
                yield data
        except TimeoutError:
            raise ProviderError(
                "timeout", f"the stream stalled for more than {self._idle_s:g}s", provider=self._provider
            ) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ProviderError(
                "connection", f"the stream was cut ({type(exc).__name__})", provider=self._provider
            ) from None

    async def read_all(self) -> bytes:
        parts = [chunk async for chunk in self.chunks()]
        return b"".join(parts)

    def close(self) -> None:
        self._resp.close()


class Transport:
    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._settings: dict[str, PoolSettings] = {}

    def configure(self, provider: str, settings: PoolSettings) -> None:
        self._settings[provider] = settings

    def _session(self, provider: str) -> aiohttp.ClientSession:
        session = self._sessions.get(provider)
        if session is None:
            settings = self._settings.get(provider, PoolSettings())
            connector = aiohttp.TCPConnector(
                limit=settings.max_connections,
                limit_per_host=0,
                ttl_dns_cache=300,
                enable_cleanup_closed=True,
                keepalive_timeout=30,
                family=socket.AF_UNSPEC,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout_s),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                trust_env=False,
            )
            self._sessions[provider] = session
        return session

    async def _open(self, req: UpstreamRequest, deadline: Deadline) -> aiohttp.ClientResponse:
        timeout = aiohttp.ClientTimeout(
            total=None if req.stream else deadline.total_s,
            sock_connect=self._settings.get(req.provider, PoolSettings()).connect_timeout_s,
            sock_read=deadline.first_byte_s if req.stream else None,
        )
        try:
            return await self._session(req.provider).request(
                req.method,
                req.url,
                data=req.body,
                headers=req.headers,
                allow_redirects=False,
                timeout=timeout,
            )
        except TimeoutError:
            raise ProviderError("timeout", "no response in time", provider=req.provider) from None
        except aiohttp.ClientConnectorError as exc:
            raise ProviderError(
                "connection", f"cannot connect ({exc.os_error.strerror or 'refused'})", provider=req.provider
            ) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ProviderError(
                "connection", f"connection failed ({type(exc).__name__})", provider=req.provider
            ) from None

    async def send(self, req: UpstreamRequest, deadline: Deadline) -> UpstreamResponse:
        """Send a request and read the whole body (``deadline.total_s`` covers both)."""
        resp = await self._open(req, deadline)
        try:
            parts: list[bytes] = []
            size = 0
            while data := await resp.content.readany():
                size += len(data)
                if size > MAX_RESPONSE_BYTES:
                    raise ProviderError("bad_response", "response body too large", provider=req.provider)
                parts.append(data)
            body = parts[0] if len(parts) == 1 else b"".join(parts)
        except TimeoutError:
            raise ProviderError(
                "timeout", "response body did not arrive in time", provider=req.provider
            ) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ProviderError(
                "connection", f"body cut ({type(exc).__name__})", provider=req.provider
            ) from None
        finally:
            resp.release()
        return UpstreamResponse(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)

    async def open_stream(self, req: UpstreamRequest, deadline: Deadline) -> UpstreamStream:
        """Send a streaming request and return once the status line and headers arrived."""
        resp = await self._open(req, deadline)
        return UpstreamStream(resp, req.provider, deadline.idle_s)

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()
