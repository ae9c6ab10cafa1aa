"""Deployment configuration: YAML loading and validation into frozen typed objects."""

from ccbridge.config.loader import load_config, parse_config
from ccbridge.config.model import *  # noqa: F403
from ccbridge.config.yamlsrc import ConfigError, Problem

__all__ = ["ConfigError", "Problem", "load_config", "parse_config"]
