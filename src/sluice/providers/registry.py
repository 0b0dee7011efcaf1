"""The one place that maps a provider ``type`` in the policy file to its adapter class.

Adding a provider: one package under ``providers/``, one line in ``ADAPTERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sluice.config.model import ProviderConfig
from sluice.errors import ConfigError
from sluice.providers.anthropic import AnthropicAdapter
from sluice.providers.azure import AzureOpenAIAdapter
from sluice.providers.base import ChatAdapter, MaxOutput
from sluice.providers.bedrock import BedrockAdapter
from sluice.providers.gemini import GeminiAdapter
from sluice.providers.openai import OpenAIAdapter

AdapterFactory = Callable[[str, ProviderConfig], ChatAdapter]

#: Adapters that need the model's output limit (Anthropic requires max_tokens).
_NEEDS_MAX_OUTPUT: Final = {"anthropic"}

ADAPTERS: Final[dict[str, AdapterFactory]] = {
    "openai": OpenAIAdapter,
    "anthropic": AnthropicAdapter,
    "azure": AzureOpenAIAdapter,
    "gemini": GeminiAdapter,
    "bedrock": BedrockAdapter,
}


def create_adapter(
    name: str, config: ProviderConfig, max_output_tokens: MaxOutput | None = None
) -> ChatAdapter:
    factory = ADAPTERS.get(config.type)
    if factory is None:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigError(
            f"unknown provider type '{config.type}' (known: {known}) - at `$.providers.{name}.type`"
        )
    if config.type in _NEEDS_MAX_OUTPUT and max_output_tokens is not None:
        return AnthropicAdapter(name, config, max_output_tokens)
    return factory(name, config)
