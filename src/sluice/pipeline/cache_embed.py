"""``cache.semantic.embedder: {model: NAME}``: embed through the gateway's own providers.

Each embedding is an embeddings request of its own — routed like any other (routes, targets,
retries, fallbacks), recorded in the request log against the caller's key and team with its cost,
and noted as the semantic cache's. It is not admitted against the caller's rate limits or budgets:
it is part of serving the request that was already admitted.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sluice.errors import ServiceUnavailable, SluiceError
from sluice.pipeline.accounting import Accounting
from sluice.schema.chat import Usage
from sluice.schema.context import RequestContext
from sluice.schema.embeddings import EmbeddingRequest, EmbeddingResponse, base64_to_floats

if TYPE_CHECKING:
    from sluice.cache.embedders import Vector

Embed = Callable[[RequestContext], Awaitable[EmbeddingResponse]]


class UpstreamEmbedder:
    def __init__(self, model: str, embed: Embed, accounting: Accounting) -> None:
        self.name = model
        self._embed = embed
        self._accounting = accounting

    async def embed(self, text: str, ctx: RequestContext | None = None) -> Vector:
        sub = RequestContext(
            request_id=(ctx.request_id if ctx else "cache") + "-embed", dialect="openai", endpoint="embeddings",
            presented_key=None, embedding=EmbeddingRequest(model=self.name, input=text), requested_model=self.name,
            principal=ctx.principal if ctx else None, user=ctx.user if ctx else None,
            tags=ctx.tags if ctx else (), note="semantic cache: embedding of the last user turn",
        )  # fmt: skip
        try:
            resp = await self._embed(sub)
        except SluiceError as exc:
            self._accounting.fail(sub, exc)
            raise
        u = resp.usage
        sub.usage = Usage(prompt_tokens=u.prompt_tokens, total_tokens=u.total_tokens or u.prompt_tokens)
        self._accounting.finish(sub)
        if not resp.data:
            raise ServiceUnavailable(f"embeddings model '{self.name}' returned no vector")
        import numpy as np

        vec = resp.data[0].embedding
        out: Vector = np.asarray(base64_to_floats(vec) if isinstance(vec, str) else vec, dtype=np.float32)
        norm = float(np.linalg.norm(out))
        if not math.isfinite(norm) or norm == 0.0:
            raise ServiceUnavailable(f"embeddings model '{self.name}' returned an empty vector")
        return out / np.float32(norm)
