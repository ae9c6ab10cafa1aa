"""ccbridge: follow-the-sun routing for multi-site Asterisk contact centres."""

__version__ = "0.1.0"
