"""AWS Bedrock Converse / ConverseStream."""

from sluice.providers.bedrock.adapter import BedrockAdapter

__all__ = ["BedrockAdapter"]
