"""Alembic migrations of the record schema, shipped inside the package."""
