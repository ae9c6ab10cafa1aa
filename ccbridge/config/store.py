"""The `store:` section: where call records are kept and how the record writer buffers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ccbridge.config.model import SecretValue
from ccbridge.config.reader import Reader

# The drivers the store runs on: an admin writes the plain scheme, the store picks the
# asyncio driver (the only one installed for each engine).
_SCHEMES = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
DEFAULT_SQLITE = "var/ccbridge.db"  # relative to the config file's folder
DEFAULT_JOURNAL_PG = "var/ccbridge-records.journal"
# Records the writer holds in memory (then it reads them back from the journal; it drops
# them, counted as unwritten, only when the journal cannot be written either). ~640 bytes
# each: 20,000 is ~12 MB, a share of the bridge's 100 MB RSS bound
# (tests/unit/test_records_memory.py; it was 100,000: ~61 MB).
DEFAULT_QUEUE_SIZE = 20_000
# The memory in bytes, estimated from the records' journal lines (MEMORY_PER_JSON_BYTE
# in ccbridge/store/writer.py): a count alone let 20,000 records of 64 KiB JSON each hold
# over a gigabyte.
DEFAULT_QUEUE_BYTES = 16 * 2**20


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """A database URL without its password (that is a secret) and the writer's limits.

    ``enabled``: the bridge keeps call records (ccbridge/records/). On when the config
    has a ``store:`` section (``store: {}`` for the default SQLite file), unless it says
    ``enabled: false``; off without one.
    """

    enabled: bool = False
    url: str = f"sqlite+aiosqlite:///{DEFAULT_SQLITE}"
    password: SecretValue | None = None
    journal: str = f"{DEFAULT_SQLITE}.journal"
    queue_size: int = DEFAULT_QUEUE_SIZE  # records held in memory before the journal only
    queue_bytes: int = DEFAULT_QUEUE_BYTES  # the same bound in bytes of memory (estimated)
    batch_size: int = 500  # records per database transaction
    flush_interval: float = 0.05  # seconds: the longest a record waits for the journal
    fsync_interval: float = 1.0  # seconds between fsyncs of the journal
    # The database writes in a child process (ccbridge/store/writeproc.py), which reads
    # the journaled records from the journal itself: the bridge's GIL keeps the loop and
    # the journal's lines only. On by default since the tenth session: the one setting
    # that kept up with 2,000 calls/s on both engines (BENCHMARKS.md §9b); the child is
    # ~50-60 MB of RSS of its own, beside the bridge's (``false``: all in one process).
    writer_process: bool = True

    @property
    def engine(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.url.split("+", 1)[0]


def parse_store(r: Reader, v: Any) -> StoreSettings:
    d = r.mapping(
        v,
        {
            "enabled",
            "url",
            "password",
            "journal",
            "queue_size",
            "queue_bytes",
            "batch_size",
            "flush_interval",
            "fsync_interval",
            "writer_process",
        },
    )
    url = r.get(d, "url", lambda x: _url(r, x), None) or _sqlite_url(r.base_dir / DEFAULT_SQLITE)
    engine = url.split("+", 1)[0]
    if engine == "sqlite":
        default_journal = url.removeprefix("sqlite+aiosqlite:///") + ".journal"
    else:
        default_journal = str(r.base_dir / DEFAULT_JOURNAL_PG)
    journal = r.get(d, "journal", r.string, None)
    if journal is not None:
        p = Path(journal)
        journal = str(p if p.is_absolute() else r.base_dir / p)
    password = r.get(d, "password", r.secret, None)
    if password is not None and engine == "sqlite":
        with r.at("password", d):
            raise r.fail("an SQLite store takes no password")
    return StoreSettings(
        enabled=r.get(d, "enabled", r.boolean, True),
        url=url,
        password=password,
        journal=journal or default_journal,
        **r.given(
            d,
            {
                "queue_size": r.integer(100, 10_000_000),
                "queue_bytes": r.integer(2**20, 2**34),
                "batch_size": r.integer(1, 100_000),
                "flush_interval": r.number(0.001, 10),
                "fsync_interval": r.number(0, 3600),
                "writer_process": r.boolean,
            },
        ),
    )


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _url(r: Reader, v: Any) -> str:
    raw = r.string(v)
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise r.fail(
            f"unknown database URL scheme '{scheme}': use sqlite:///PATH or "
            "postgresql://USER@HOST[:PORT]/DATABASE"
        )
    driver = _SCHEMES[scheme]
    if driver.startswith("sqlite"):
        # sqlite:///relative/path (three slashes) or sqlite:////absolute/path
        if not rest.startswith("/") or rest == "/":
            raise r.fail(
                "an SQLite URL is sqlite:///PATH (relative to this file) or sqlite:////PATH"
            )
        p = Path(rest[1:])
        return _sqlite_url(p if p.is_absolute() else r.base_dir / p)
    parts = urlsplit(f"postgresql://{rest}")
    if parts.password is not None:
        # A password in the file ends up in backups and version control.
        raise r.fail(
            "the password must not be written in the URL: use store.password: "
            "{env: VAR} or {file: PATH}"
        )
    if not parts.hostname or not parts.path.strip("/"):
        raise r.fail("a PostgreSQL URL needs a host and a database: postgresql://USER@HOST/DB")
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise r.fail("the port in the URL is not a number") from None
    return f"{driver}://{rest}"
