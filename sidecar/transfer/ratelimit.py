"""A global bandwidth cap shared by every connection, changeable at run time."""

from __future__ import annotations

import anyio

from sidecar.config import MAX_BYTES_PER_SECOND


class RateLimiter:
    """Token bucket in bytes; ``bytes_per_second`` None or 0 means unlimited.

    A change of the cap wakes whoever is waiting: the bytes still owed are then paid at
    the new rate, or not at all when the cap is gone. Otherwise a cap of 1 B/s would
    hold a download (and, through the lock, every other) for a day after it is lifted."""

    def __init__(self, bytes_per_second: int | None = None) -> None:
        self.bytes_per_second = _bounded(bytes_per_second)
        self._allowance = 0.0  # bytes that may go now; negative: owed
        self._last = 0.0
        self._lock = anyio.Lock()
        self._changed: anyio.Event | None = None  # made on first wait: needs a running loop

    def set_rate(self, bytes_per_second: int | None) -> None:
        """From the event loop's thread."""
        self._refill()  # what the old cap allowed until now stays allowed
        self.bytes_per_second = _bounded(bytes_per_second)
        rate = self.bytes_per_second
        self._allowance = 0.0 if rate is None else min(self._allowance, rate / 4)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def consume(self, count: int) -> None:
        if self.bytes_per_second is None:
            return
        async with self._lock:  # one waiter at a time keeps the sum under the cap
            self._refill()
            if self.bytes_per_second is None:  # lifted while we queued for the lock
                return
            self._allowance -= count
            while self._allowance < 0 and (rate := self.bytes_per_second) is not None:
                if self._changed is None:
                    self._changed = anyio.Event()
                with anyio.move_on_after(-self._allowance / rate):
                    await self._changed.wait()
                self._refill()

    def _refill(self) -> None:
        now = anyio.current_time()
        rate = self.bytes_per_second
        if rate is not None:
            burst = rate / 4  # at most a quarter second of bytes ahead of the cap
            self._allowance = min(burst, self._allowance + (now - self._last) * rate)
        self._last = now


def _bounded(bytes_per_second: int | None) -> int | None:
    if not bytes_per_second or bytes_per_second < 0:
        return None
    return min(bytes_per_second, MAX_BYTES_PER_SECOND)
