"""Which of the slow-callback lines a lab test collects are the test's own steps.

The integration suite's gate (tests/integration/conftest.py, ``no_slow_callbacks``) fails
a test on a slow callback of the bridge, and lists, without failing, a step of the test's
own code. Test code runs in two kinds of task on the test's loop: the test function's
coroutine (``coro=<test_...>``) and pytest-asyncio's wrapper around an async fixture's
set-up or tear-down (its coroutine is defined in pytest_asyncio's plugin module, whatever
the version names it). Anything the bridge runs is a callback or task of its own, with its
own coroutine or handle in the line, and stays under the gate.
"""

from __future__ import annotations

import re

# asyncio's repr of a task's coroutine: "coro=<QUALNAME() running at FILE:LINE>" while it
# runs, "coro=<QUALNAME() done, defined at FILE:LINE>" once it has finished.
_FIXTURE_STEP = re.compile(
    r"coro=<\S+\(\) (?:running|done, defined) at \S*[/\\]pytest_asyncio[/\\]\S+\.py:\d+>"
)


def is_test_step(line: str) -> bool:
    """The slow callback is a step of the test function's coroutine or of an async
    fixture's set-up or tear-down: test code, not the bridge."""
    return "coro=<test_" in line or _FIXTURE_STEP.search(line) is not None
