"""How many connections one large file uses: a few at first, doubled while a doubling
pays, all of them at once when each is capped on its own. Pure arithmetic over what
the last window measured, so the policy is tested without a network."""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_CONNECTIONS = 4
WINDOW = 0.05  # seconds between judgements
DOUBLING_GAIN = 1.25  # a doubling that adds less than this is not worth its CPU
# Each connection moving less than this while this process uses under half a core is
# capped by the server or the path, not by our CPU: every connection allowed is worth
# opening at once (as aria2c -x does). A busy CPU (TLS on a small machine) doubles.
SLOW_CONNECTION = 50_000_000  # bytes per second
IDLE_CPU = 0.5  # of one core


@dataclass
class Ramp:
    maximum: int
    before_adding: float = 0.0  # the first doubling needs only some rate: start small, fast

    def more(self, connections: int, rate: float, elapsed: float, cpu: float) -> int:
        """Connections to add after a window of ``elapsed`` seconds in which the file
        moved ``rate`` bytes a second over ``connections`` and this process used ``cpu``
        seconds of CPU.

        A doubling counts only if it raised the file's rate by a quarter: each
        connection was capped, not the line. A rate that falls lowers the baseline, so
        the file probes again when the line frees up (another download ended). Nothing
        is added while the event loop wakes late (``elapsed`` well over the window): the
        CPU is full, and more connections would only add work and slow the protocol's
        answers."""
        if rate * DOUBLING_GAIN < self.before_adding:
            self.before_adding = rate
        room = self.maximum - connections
        late = elapsed > WINDOW * 1.5
        if room <= 0 or late or rate <= 0 or rate < self.before_adding * DOUBLING_GAIN:
            return 0
        self.before_adding = rate
        idle = cpu / elapsed < IDLE_CPU
        if idle and rate / max(connections, 1) < SLOW_CONNECTION:
            return room
        return min(connections, room)
