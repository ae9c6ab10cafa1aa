"""Deployment configuration: YAML loading and validation into frozen typed objects."""

from ccbridge.config.model import *  # noqa: F403
