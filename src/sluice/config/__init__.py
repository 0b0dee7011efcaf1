"""The policy file: typed model and loader."""

from sluice.config.loader import load_config, parse_config
from sluice.config.model import Config, Secret

__all__ = ["Config", "Secret", "load_config", "parse_config"]
