"""The key=value log line: its time stamp, quoting and the record fields setup leaves out."""

from __future__ import annotations

import logging
import time

from ccbridge import logs
from ccbridge.logs import KeyValueFormatter, ctx


def _line(fmt: KeyValueFormatter, created: float, **fields: object) -> str:
    record = logging.LogRecord("ccbridge.x", logging.INFO, __file__, 1, "m", None, None)
    record.created, record.msecs = created, (created % 1) * 1000
    record.ctx = ctx(**fields)["ctx"]
    return fmt.format(record)


def test_each_line_carries_its_own_second_and_millisecond() -> None:
    fmt = KeyValueFormatter()
    t = 1_795_000_000.0  # 2026-11-18T11:06:40Z
    lines = [_line(fmt, at) for at in (t + 0.25, t + 0.999, t + 1.5, t - 86_400.0, t + 0.25)]
    stamps = [line.split()[0] for line in lines]
    assert stamps == [
        "ts=2026-11-18T11:06:40.250Z",
        "ts=2026-11-18T11:06:40.999Z",
        "ts=2026-11-18T11:06:41.500Z",
        "ts=2026-11-17T11:06:40.000Z",
        "ts=2026-11-18T11:06:40.250Z",
    ]
    expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t + 7.5)))
    assert _line(fmt, t + 7.5).startswith(f"ts={expected}.500Z ")


def test_a_value_is_quoted_when_it_holds_a_space_quote_equals_or_newline_or_is_empty() -> None:
    line = _line(
        KeyValueFormatter(),
        0.0,
        a="plain",
        b="two words",
        c='say "hi"',
        d="k=v",
        e="one\ntwo",
        f="",
        g=42,
        h=None,
        i="tab\there",
    )
    fields = line.split(" ", 4)[4]
    assert fields == (
        r'a=plain b="two words" c="say \"hi\"" d="k=v" e="one\ntwo" f="" g=42 h=None'
        " i=tab\there"
    )


def test_setup_leaves_out_the_fields_no_formatter_prints() -> None:
    saved = (logging._srcfile, logging.logThreads, logging.logProcesses)
    saved_multi, root = logging.logMultiprocessing, logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.setup("INFO")
        record = logging.getLogger("ccbridge.x").makeRecord(
            "ccbridge.x", logging.INFO, "(unknown file)", 0, "m", None, None
        )
        assert record.thread is None and record.process is None
        assert logging._srcfile is None  # no stack walk for the caller's frame
    finally:
        logging._srcfile, logging.logThreads, logging.logProcesses = saved
        logging.logMultiprocessing = saved_multi
        root.handlers[:] = handlers
        root.setLevel(level)
