"""Anthropic's Messages API."""

from sluice.providers.anthropic.adapter import AnthropicAdapter

__all__ = ["AnthropicAdapter"]
