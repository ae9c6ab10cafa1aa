"""Alembic environment: migrate on the connection ccbridge passes in (see migrate.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from ccbridge.store.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations with `ccbridge db upgrade CONFIG`, not the alembic CLI")
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
