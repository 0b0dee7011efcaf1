"""Sluice: an AI gateway — one OpenAI- and Anthropic-compatible front door for every model provider."""
