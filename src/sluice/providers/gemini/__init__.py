"""Google Gemini (generateContent / streamGenerateContent)."""

from sluice.providers.gemini.adapter import GeminiAdapter

__all__ = ["GeminiAdapter"]
