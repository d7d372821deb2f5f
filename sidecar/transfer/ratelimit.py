"""A global bandwidth cap shared by every connection, changeable at run time."""

from __future__ import annotations

import anyio


class RateLimiter:
    """Token bucket in bytes; ``bytes_per_second`` None or 0 means unlimited."""

    def __init__(self, bytes_per_second: int | None = None) -> None:
        self.bytes_per_second = bytes_per_second or None
        self._allowance = 0.0
        self._last = 0.0
        self._lock = anyio.Lock()

    def set_rate(self, bytes_per_second: int | None) -> None:
        self.bytes_per_second = bytes_per_second or None
        self._allowance = 0.0

    async def consume(self, count: int) -> None:
        rate = self.bytes_per_second
        if rate is None:
            return
        async with self._lock:  # one waiter at a time keeps the sum under the cap
            now = anyio.current_time()
            burst = rate / 4  # at most a quarter second of bytes ahead of the cap
            self._allowance = min(burst, self._allowance + (now - self._last) * rate)
            self._last = now
            self._allowance -= count
            if self._allowance < 0:
                await anyio.sleep(-self._allowance / rate)
