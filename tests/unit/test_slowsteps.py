"""The lab gate's split of slow-callback lines into test steps and the bridge's."""

from __future__ import annotations

from tests.slowsteps import is_test_step

# Lines as ccbridge/loopdebug.py wrote them in a lab run (paths kept, tails cut).
TEST_STEP = (
    "slow callback: <Task pending name='Task-3' coro=<test_every_dashboard_and_rule_query_"
    "has_data() running at /work/wt-me/tests/integration/test_prometheus.py:299> wait_for="
    "<Future pending cb=[Task.task_wakeup()] created at /root/.pyenv/versions/3.11.7/lib/"
    "python3.11/asyncio/base_events.py:427> ...> took 127 ms (limit 50 ms; waited for a CPU 1 ms)"
)
FIXTURE_SETUP = (
    "slow callback: <Task finished name='Task-6496' coro=<_wrap_asyncgen_fixture.<locals>."
    "_asyncgen_fixture_wrapper.<locals>.setup() done, defined at /work/wt-me/.venv/lib/"
    "python3.11/site-packages/pytest_asyncio/plugin.py:409> result=<aiohttp.clie..."
    "x7f6a515cc990> created at /root/.pyenv/versions/3.11.7/lib/python3.11/asyncio/"
    "runners.py:100> took 64 ms (limit 50 ms; waited for a CPU 0 ms)"
)
FIXTURE_TEARDOWN = (
    "slow callback: <Task pending name='Task-12' coro=<_wrap_asyncgen_fixture.<locals>."
    "_asyncgen_fixture_wrapper.<locals>.finalizer.<locals>.async_finalizer() running at "
    "/venv/lib/python3.11/site-packages/pytest_asyncio/plugin.py:423> ...> took 71 ms "
    "(limit 50 ms; waited for a CPU 0 ms)"
)
PLAIN_FIXTURE = (
    "slow callback: <Task finished name='Task-9' coro=<_wrap_async_fixture.<locals>."
    "_async_fixture_wrapper.<locals>.setup() done, defined at C:\\venv\\Lib\\site-packages"
    "\\pytest_asyncio\\plugin.py:457> result=None> took 55 ms (limit 50 ms)"
)
BRIDGE_TASK = (
    "slow callback: <Task pending name='Task-88' coro=<SiteLink._run() running at "
    "/work/wt-me/ccbridge/ami/client.py:300> wait_for=<Future pending ...>> took 61 ms "
    "(limit 50 ms; waited for a CPU 0 ms)"
)
BRIDGE_HANDLE = (
    "slow callback: <Handle _SelectorSocketTransport._read_ready() created at "
    "/root/.pyenv/versions/3.11.7/lib/python3.11/asyncio/selector_events.py:254> took 58 ms "
    "(limit 50 ms; waited for a CPU 0 ms)"
)
# A bridge coroutine that a fixture started is the bridge's, whatever called it: only the
# coroutine the task runs counts, not a path named elsewhere in the line.
BRIDGE_FROM_FIXTURE = (
    "slow callback: <Task pending name='Task-90' coro=<Bridge._housekeeping() running at "
    "/work/wt-me/ccbridge/app.py:820> created at /venv/lib/python3.11/site-packages/"
    "pytest_asyncio/plugin.py:414> took 52 ms (limit 50 ms)"
)


def test_the_test_functions_and_the_fixtures_steps_are_test_steps() -> None:
    for line in (TEST_STEP, FIXTURE_SETUP, FIXTURE_TEARDOWN, PLAIN_FIXTURE):
        assert is_test_step(line), line


def test_the_bridges_tasks_and_handles_are_not() -> None:
    for line in (BRIDGE_TASK, BRIDGE_HANDLE, BRIDGE_FROM_FIXTURE):
        assert not is_test_step(line), line
