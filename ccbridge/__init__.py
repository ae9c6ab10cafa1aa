"""ccbridge: follow-the-sun routing for multi-site Asterisk contact centres."""

__version__ = "0.1.0"

# Before any part of ccbridge imports SQLAlchemy's asyncio extension: without its ORM.
from ccbridge import leanimports as _lean

_lean.install()
