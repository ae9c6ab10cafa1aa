"""INSERT ... ON CONFLICT for the engine at hand, PostgreSQL's dialect imported only there.

``sqlalchemy.dialects.postgresql`` brings its asyncpg, psycopg and pg8000 modules: 2.2 MB
of RSS in a bridge on SQLite that never uses them (BENCHMARKS.md section 4). A PostgreSQL
engine has imported it already when this asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql


def insert(dialect: str, table: Table) -> sqlite.Insert | postgresql.Insert:
    """``table``'s INSERT for ``dialect`` ('postgresql', else SQLite's)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    return sqlite.insert(table)
