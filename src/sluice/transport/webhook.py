"""Webhooks (budget alerts, and any later notification) go out through the gateway's one network
client: the same pools, timeouts and no-redirect rule as upstream calls."""

from __future__ import annotations

from sluice.errors import ProviderError
from sluice.schema.upstream import UpstreamRequest
from sluice.transport.client import Deadline, PoolSettings, Transport


class WebhookFailed(Exception):
    """The POST failed or was refused. The message never holds the URL (it may carry a token)."""


class Webhook:
    """POSTs JSON bodies to one URL from the policy. ``post`` raises :class:`WebhookFailed` on a
    connection failure, a timeout or a status >= 300 (redirects are not followed)."""

    def __init__(self, transport: Transport, name: str, url: str, *, timeout_s: float = 5.0) -> None:
        self._transport = transport
        self._pool = f"webhook:{name}"  # a pool of its own, never shared with a provider's
        self._url = url
        self._timeout_s = timeout_s
        transport.configure(self._pool, PoolSettings(max_connections=4, connect_timeout_s=timeout_s))

    async def post(self, body: bytes) -> int:
        req = UpstreamRequest(self._pool, "POST", self._url, {"content-type": "application/json"}, body)
        try:
            resp = await self._transport.send(req, Deadline(total_s=self._timeout_s))
        except ProviderError as exc:
            raise WebhookFailed(exc.kind) from None
        if resp.status >= 300:
            raise WebhookFailed(f"status {resp.status}")
        return resp.status
