"""What limits need to know about models: prices to reserve and settle, and which tokenizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from sluice.config.model import ModelConfig, ProviderConfig
from sluice.pricing import Price, PriceBook


class ModelCatalog(Protocol):
    """Answers for a requested model name (a gateway alias or an upstream name)."""

    def reserve_price(self, model: str) -> Price | None:
        """The highest price the request could be served at (every target considered); None if unknown."""
        ...

    def served_price(self, model: str, provider: str | None) -> Price | None:
        """The price of the upstream model that answered, on that provider."""
        ...

    def tokenizer_model(self, model: str) -> str:
        """An upstream model name whose tokenizer counts this request's prompt."""
        ...


class ConfigCatalog:
    """:class:`ModelCatalog` from the policy's ``models:`` and ``providers:`` and the price book."""

    def __init__(
        self, models: Mapping[str, ModelConfig], providers: Mapping[str, ProviderConfig], book: PriceBook
    ) -> None:
        self._models = models
        self._providers = providers
        self._book = book
        self._reserve: dict[str, Price | None] = {}

    def _provider_type(self, provider: str | None) -> str | None:
        cfg = self._providers.get(provider) if provider else None
        return cfg.type if cfg is not None else None

    def reserve_price(self, model: str) -> Price | None:
        if model in self._reserve:
            return self._reserve[model]
        cfg = self._models.get(model)
        if cfg is None:
            price = self._book.lookup(model)
        else:
            prices = [
                p
                for t in cfg.targets
                if (p := self._book.lookup(t.model, self._provider_type(t.provider))) is not None
            ]
            price = _ceiling(prices) if prices else None
        self._reserve[model] = price
        return price

    def served_price(self, model: str, provider: str | None) -> Price | None:
        return self._book.lookup(model, self._provider_type(provider))

    def tokenizer_model(self, model: str) -> str:
        cfg = self._models.get(model)
        return cfg.targets[0].model if cfg is not None and cfg.targets else model


def _ceiling(prices: list[Price]) -> Price:
    """Component-wise maximum: a bound on what any target can charge."""
    reads = [p.cache_read_per_token for p in prices if p.cache_read_per_token is not None]
    writes = [p.cache_write_per_token for p in prices if p.cache_write_per_token is not None]
    outs = [p.max_output_tokens for p in prices]
    return Price(
        input_per_token=max(p.input_per_token for p in prices),
        output_per_token=max(p.output_per_token for p in prices),
        cache_read_per_token=max(reads) if reads else None,
        cache_write_per_token=max(writes) if writes else None,
        max_output_tokens=None if None in outs else max(o for o in outs if o is not None),
    )
