"""Failed logins slowed per address: after ``limit`` failures within ``window`` seconds an
address is refused until its oldest failure leaves the window. Time is passed in; the
table is bounded (the oldest addresses are forgotten first), so a flood of addresses
cannot grow it without end."""

from __future__ import annotations

from collections import OrderedDict, deque


class FailureLimiter:
    def __init__(self, limit: int, window: float, max_addresses: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str, now: float) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        times = self._recent(address, now)
        if times is None or len(times) < self.limit:
            return 0.0
        # Clamped: float rounding of (t + window - now) may exceed the window by 1 ulp.
        return min(self.window, max(0.0, times[-self.limit] + self.window - now))

    def failed(self, address: str, now: float) -> None:
        times = self._recent(address, now)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.limit)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(address)
        times.append(now)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
