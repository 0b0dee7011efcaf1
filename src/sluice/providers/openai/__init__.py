"""OpenAI and every OpenAI-compatible upstream (vLLM, Ollama's /v1, Groq, Mistral, Together, ...)."""

from sluice.providers.openai.adapter import OpenAIAdapter

__all__ = ["OpenAIAdapter"]
