"""Failed logins slowed per address, with time passed in: the limit, the window sliding,
other addresses untouched, a success forgetting, and a bounded table."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ccbridge.access.ratelimit import FailureLimiter


def test_the_limit_slows_one_address_for_the_rest_of_the_window() -> None:
    lim = FailureLimiter(limit=3, window=60)
    for t in (0.0, 10.0, 20.0):
        assert lim.retry_after("a", t) == 0
        lim.failed("a", t)
    assert lim.retry_after("a", 21.0) == 39.0  # until the first failure leaves the window
    assert lim.retry_after("b", 21.0) == 0  # another address is served
    assert lim.retry_after("a", 60.0) == 0  # the window slid past the first failure
    lim.failed("a", 60.0)
    assert lim.retry_after("a", 61.0) == 9.0  # failures at 10, 20, 60


def test_a_success_forgets_the_address() -> None:
    lim = FailureLimiter(limit=2, window=60)
    lim.failed("a", 0)
    lim.failed("a", 1)
    assert lim.retry_after("a", 2) > 0
    lim.succeeded("a")
    assert lim.retry_after("a", 2) == 0


@given(st.lists(st.tuples(st.integers(0, 50), st.floats(0, 1000)), max_size=300))
def test_the_table_stays_bounded_and_retry_is_never_negative(
    events: list[tuple[int, float]],
) -> None:
    lim = FailureLimiter(limit=3, window=30, max_addresses=20)
    now = 0.0
    for addr, dt in events:
        now += dt / 100
        lim.failed(f"10.0.0.{addr}", now)
        assert 0 <= lim.retry_after(f"10.0.0.{addr}", now) <= 30
    assert len(lim._failures) <= 20
