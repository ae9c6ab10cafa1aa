"""Recorded AMI event streams of real lab calls (tests/bench/record_call_streams.py) and a
replay of them through the record machine into rows as the store would hold them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ccbridge.config import Config, load_config
from ccbridge.records.machine import Out, RecordMachine, settings_from_config
from ccbridge.routing.engine import CallRequest, Router
from ccbridge.routing.state import initial_state, set_site_up
from ccbridge.store.records import Record, check_record

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "records"
STREAMS = ("answered", "abandoned", "agent_hangup", "cross_site", "fallback")
ORDERS_IN = "+918000000001"
# The callers the recorder used (the fixtures hold them masked): the decision needs them.
CALLERS = {"cross_site": "+8801712345678"}
HINDI = "+919812345678"
T0 = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # both lab sites open: routing decides

Stream = list[tuple[str, dict[str, str]]]


def lab_config() -> Config:
    return load_config(REPO / "examples" / "lab.yaml", resolve_secrets=False)


def load(name: str) -> Stream:
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return [(item["site"], dict(item["event"])) for item in data]


def call_id_of(stream: Stream) -> str:
    for _, ev in stream:
        var = ev.get("ChanVariable", "")
        if var.startswith("CCB_CALLID="):
            return var.split("=", 1)[1]
    raise AssertionError("no call ID in the stream")


def renumbered(stream: Stream, n: int) -> Stream:
    """The recorded call again with its own call ID and channels (the ``n``-th copy),
    every string new, as the AMI parser gives them: what the machine or the writer's
    queue keeps of them is what they cost."""
    cid = call_id_of(stream)
    entry, epoch = cid.split(":")[0], cid.split(":")[1].split(".")[0]
    ids = {cid: f"{entry}:{int(epoch) + n}.000000:{n}"}
    ids[f"{entry}-{epoch}."] = f"{entry}-{int(epoch) + n}."
    call = []
    for site, ev in stream:
        values = dict(ev)
        for k, v in values.items():
            for old, new in ids.items():
                v = v.replace(old, new)
            values[k] = "".join(v)  # a new string even where nothing was replaced
        call.append((site, values))
    return call


def machine(config: Config | None = None, **limits: Any) -> RecordMachine:
    return RecordMachine(settings_from_config(config or lab_config(), **limits))


def decide(m: RecordMachine, config: Config, stream: Stream, caller: str = HINDI) -> list[Out]:
    """What the bridge's FastAGI decision adds for the stream's call (not for a call the
    static fallback took: the bridge was down)."""
    call_id = call_id_of(stream)
    entry = call_id.split(":", 1)[0]
    uniqueid = next(ev["Linkedid"] for s, ev in stream if s == entry and "Linkedid" in ev)
    state = initial_state(s.name for s in config.sites)
    for s in config.sites:
        state = set_site_up(state, s.name, True, 0.0)
    call = CallRequest(ORDERS_IN, caller, entry, call_id=call_id, uniqueid=uniqueid)
    decision = Router(config).decide(call, state, T0)
    first = _at(stream[0][1])
    return m.decision(call, decision, first - timedelta(milliseconds=50))


def _at(ev: dict[str, str]) -> datetime:
    return datetime.fromtimestamp(float(ev["Timestamp"]), UTC)


def feed_all(m: RecordMachine, stream: Iterable[tuple[str, dict[str, str]]]) -> list[Out]:
    out: list[Out] = []
    for site, ev in stream:
        out += m.feed(site, ev, T0)
    return out


def checked(out: Iterable[Out]) -> list[Record]:
    """Every record as the writer would take it (RecordError on a corrupt one)."""
    return [check_record(table, values) for table, values in out]


def rows(out: Iterable[Out]) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """The rows the store ends up with: per key, a value given replaces, None keeps
    (store/write.py), call_events insert only."""
    tables: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for rec in checked(out):
        table = tables.setdefault(rec.table, {})
        row = table.get(rec.key())
        if row is None:
            table[rec.key()] = {k: v for k, v in rec.values.items() if v is not None}
        elif rec.table != "call_events":
            row.update((k, v) for k, v in rec.values.items() if v is not None)
    return tables


def replay(
    name: str, config: Config | None = None
) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    config = config or lab_config()
    m = machine(config)
    stream = load(name)
    out = [] if name == "fallback" else decide(m, config, stream, CALLERS.get(name, HINDI))
    return rows(out + feed_all(m, stream))
