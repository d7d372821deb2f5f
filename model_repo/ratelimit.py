"""Per-client token buckets for the usage API: a misbehaving agent (or a forger) can
not flood the shared table. Memory stays bounded: the least recently seen addresses
are forgotten first (a forgotten address starts again with a full bucket).

Per process: with N server workers an address gets up to N times the rate. Behind a
proxy the client address is the proxy's unless the server trusts its forwarding
headers (``uvicorn --forwarded-allow-ips``)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class RateLimiter:
    def __init__(self, rate: float, burst: float, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> float:
        """0 when the event may pass (and is counted), else seconds until it could."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, then = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait
