"""The bytes that cross the gateway's boundary with an upstream: what providers build and parse,
and what transport sends and receives. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class UpstreamRequest:
    provider: str
    method: str
    url: str
    #: Includes the provider credential: never log or render this mapping.
    headers: dict[str, str]
    body: bytes
    stream: bool = False


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    #: Lower-cased header names.
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
