"""An external guardrail service (Lakera Guard, a Presidio analyzer behind a small adapter, a
company's own classifier), called over HTTP with a timeout.

The contract: ``POST <url>`` with ``{"guardrail": name, "direction": "input", "texts": [...]}``
(``authorization: Bearer <api_key>`` when set). A 2xx answer is a JSON object whose ``flagged``
(boolean) is the verdict; ``categories`` (a list of names, or an object of name -> boolean) is
optional and only counted. Anything else — a timeout, a connection failure, another status, a body
without a boolean ``flagged`` — is a failure, which blocks (503) unless ``on_error: allow``.

The HTTP call itself is handed in (``Post``): the pipeline wires it to the gateway's one network
client, so this module stays pure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from sluice.config.guardrails import WebhookGuardrail
from sluice.errors import ProviderError

#: (guardrail name, url, headers, body, timeout_s) -> (status, body). Raises on network failure.
Post = Callable[[str, str, dict[str, str], bytes, float], Awaitable[tuple[int, bytes]]]
_encode = msgspec.json.Encoder().encode


class WebhookFailed(Exception):
    """The service did not give a usable verdict (the message names why, never the texts)."""


@dataclass(frozen=True, slots=True)
class WebhookVerdict:
    flagged: bool
    categories: tuple[str, ...] = ()


class WebhookCaller:
    def __init__(self, post: Post) -> None:
        self._post = post

    async def check(
        self, name: str, cfg: WebhookGuardrail, direction: str, texts: list[str]
    ) -> WebhookVerdict:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if cfg.api_key is not None:
            headers["authorization"] = f"Bearer {cfg.api_key.reveal()}"
        body = _encode({"guardrail": name, "direction": direction, "texts": texts})
        try:
            status, raw = await self._post(name, cfg.url, headers, body, cfg.timeout_s)
        except TimeoutError:
            raise WebhookFailed(f"no answer within {cfg.timeout_s:g}s") from None
        except ProviderError as exc:
            if exc.kind == "timeout":
                raise WebhookFailed(f"no answer within {cfg.timeout_s:g}s") from None
            raise WebhookFailed(f"call failed ({exc.kind})") from None
        except Exception as exc:
            raise WebhookFailed(f"call failed ({type(exc).__name__})") from None
        if not 200 <= status < 300:
            raise WebhookFailed(f"answered HTTP {status}")
        return parse_verdict(raw)


def parse_verdict(raw: bytes) -> WebhookVerdict:
    try:
        data: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise WebhookFailed("answered with invalid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("flagged"), bool):
        raise WebhookFailed("answer has no boolean 'flagged'")
    cats = data.get("categories")
    names: tuple[str, ...] = ()
    if isinstance(cats, list):
        names = tuple(str(c)[:40] for c in cats if isinstance(c, str))
    elif isinstance(cats, dict):
        names = tuple(str(k)[:40] for k, v in cats.items() if v is True)
    return WebhookVerdict(data["flagged"], names[:20])
