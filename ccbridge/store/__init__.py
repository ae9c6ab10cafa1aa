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

How the ingest (next session) will use it:

- One ``RecordWriter`` per bridge, built from ``config.store`` with the bridge's
  Prometheus registry, started and stopped as a lifecycle part after the schema check
  (``migrate.check_schema``: a ``SchemaError``'s message is the one line to print).
  ``writer.status()`` goes into ``/readyz`` detail.
- An AMI event subscriber keeps a small per-call state (keyed by ``CCB_CALLID`` from
  ``channelvars``; by linkedid until the call ID is seen) and, per event, puts:
  a ``call_events`` row (``event_key`` = site-unique: uniqueid + event name + the
  event's timestamp, so two bridges produce the same key); the ``legs`` row of that
  site with what the event taught (``QueueCallerJoin`` -> queued_at, ``AgentConnect``
  -> answered_at/agent, ``AgentRingNoAnswer`` -> ring_no_answers, CEL ``LINKEDID_END``
  -> ended_at); and the ``calls`` row's new columns (the entry site's AGI route request
  gives did, caller, language, service, routing decision; the dialplan's UserEvents
  give static fallback, IVR path, QUEUESTATUS, survey score). Every record repeats the
  row's key and required columns (``calls``: call_id, entry_site, arrived_at); a column
  left out keeps its value, so partial records in any order build one row.
- Outcome, wait/talk/hold/wrap-up are computed by the subscriber when the call ends
  (one ``calls`` record with ``outcome=Outcome.X``), never in SQL.
- Coverage gaps: the AMI link's down/up transitions put a ``coverage_gaps`` row
  (site, started_at) and later the same key with ended_at.
- Reports read with SQLAlchemy Core selects over the indexes listed in schema.py, in
  a read-only connection, never through the writer.
"""
