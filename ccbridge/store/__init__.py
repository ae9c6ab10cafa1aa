"""The operating record (issue 12): every call, its legs and events, kept in SQLite or
PostgreSQL.

What is here (the foundation):

- ``schema.py``: the tables (``calls``, ``legs``, ``call_events``, ``coverage_gaps``),
  the ``Outcome`` enum, and the indexes with the report query each serves;
  ``migrations/``: alembic revisions shipped in the package; ``migrate.py`` applies
  them (``ccbridge db upgrade``) and refuses a schema it does not know
  (``ccbridge db check``, and the start-up check).
- ``records.py``: a record is ``(table, {column: value})``, checked column by column
  before it is queued; ``write.py``: one idempotent upsert per table per batch.
- ``writer.py``: ``RecordWriter.put`` never blocks the caller; a journal file and
  batched, retried database writes behind it (what survives a SIGKILL: see there).

How the bridge uses it: ``ccbridge/records/`` (the call record's ingest). One
``RecordWriter`` per bridge (``records/part.py``, a lifecycle part started after the
schema check, before the AMI links), fed by a pure per-call machine (``records/machine.py``)
keyed by ``CCB_CALLID``: every record repeats its row's key and required columns, and a
column left out keeps its value, so partial records in any order build one row. Outcome
and durations are computed by the machine when a site's leg ends, never in SQL. Coverage
gaps: the AMI link's transitions and the bridge's own absence (``records/alive.py``).
- Reports read with SQLAlchemy Core selects over the indexes listed in schema.py, in
  a read-only connection, never through the writer.
"""
