"""`ccbridge db upgrade|check CONFIG`: apply the record schema's migrations, or check it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ccbridge.config.store import StoreSettings

EXIT_SCHEMA = 2  # a schema this ccbridge refuses (as for a bad config: the admin acts)
EXIT_UNREACHABLE = 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="the call-record database: upgrade or check its schema")
    db.add_argument("action", choices=["upgrade", "check"])
    db.add_argument("config")
    db.set_defaults(func=cmd_db)


def cmd_db(args: argparse.Namespace) -> int:
    from ccbridge.cli import _load

    config = _load(args.config)
    return asyncio.run(run_db(args.action, config.store, print, _err))


def _err(line: str) -> None:
    print(line, file=sys.stderr)


async def run_db(
    action: str,
    settings: StoreSettings,
    out: Callable[[str], None],
    err: Callable[[str], None],
) -> int:
    from sqlalchemy.exc import DBAPIError

    from ccbridge.store.engine import make_engine, sqlite_path
    from ccbridge.store.migrate import SchemaError, check_schema, upgrade

    where = _where(settings)
    path = sqlite_path(settings)
    engine = make_engine(settings)  # connects lazily: nothing happens here yet
    try:
        if path is not None and action == "upgrade":
            await asyncio.to_thread(_mkdir, path)
        elif path is not None and not await asyncio.to_thread(path.exists):
            # Opening a missing SQLite file would create an empty one: say so instead.
            err(f"error: {where}: no such database file: run `ccbridge db upgrade CONFIG`")
            return EXIT_SCHEMA
        if action == "upgrade":
            before, after = await upgrade(engine)
            if before.current == after.current:
                out(f"{where}: already at revision {after.head}")
            else:
                out(f"{where}: upgraded from {before.current or 'empty'} to {after.head}")
        else:
            status = await check_schema(engine)
            out(f"{where}: {status.message}")
        return 0
    except SchemaError as exc:
        err(f"error: {where}: {exc}")
        return EXIT_SCHEMA
    except (OSError, TimeoutError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        err(f"error: {where}: cannot reach the database: {why}")
        return EXIT_UNREACHABLE
    except DBAPIError as exc:  # the drivers' own errors (refused password, no such db)
        first = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
        err(f"error: {where}: cannot use the database: {first}")
        return EXIT_UNREACHABLE
    finally:
        await engine.dispose()


def _where(settings: StoreSettings) -> str:
    """The URL without any password."""
    from sqlalchemy.engine import make_url

    return make_url(settings.url).render_as_string(hide_password=True)


def _mkdir(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
