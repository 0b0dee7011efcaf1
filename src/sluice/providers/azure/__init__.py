"""Azure OpenAI: classic deployment URLs (api-version) and the v1 endpoint."""

from sluice.providers.azure.adapter import AzureOpenAIAdapter

__all__ = ["AzureOpenAIAdapter"]
