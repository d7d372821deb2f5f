"""How many connections one large file uses: a few at first, doubled while a doubling
pays and the CPU has room, all of them at once when each is capped on its own. Pure
arithmetic over what the last window measured, so the policy is tested without a
network."""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_CONNECTIONS = 4
WINDOW = 0.05  # seconds between judgements
DOUBLING_GAIN = 1.25  # a doubling that adds less than this is not worth its CPU
# Each connection moving less than this while this process uses under half a core is
# capped by the server or the path, not by our CPU: every connection allowed is worth
# opening at once (as aria2c -x does).
SLOW_CONNECTION = 50_000_000  # bytes per second
IDLE_CPU = 0.5  # of one core
# A process using a whole core is held back by its CPU, not by the line: more
# connections only contend for the GIL (TLS on loopback: 16 cost 1.2 CPU s per GiB more
# than 2-4 and finished later; docs/decisions.md).
BUSY_CPU = 1.0  # of one core
# Nothing is added unless the machine left this much of a core idle in the window: at
# background priority the worker's own CPU time looks low when it only gets what the
# server (on loopback) or the app leaves over, and connections then only add work.
SPARE_CPU = 0.5  # of one core, the whole machine


@dataclass
class Ramp:
    maximum: int
    before_adding: float | None = None  # the rate the last addition was judged by

    def more(self, connections: int, rate: float, elapsed: float, cpu: float, idle: float) -> int:
        """Connections to add after a window of ``elapsed`` seconds in which the file
        moved ``rate`` bytes a second over ``connections``, this process used ``cpu``
        seconds of CPU and the machine left ``idle`` CPU seconds unused (all cores).

        Connections that are each slow while this process idles are capped one by one:
        all the rest open at once. Otherwise the first window only sets the baseline
        (it holds the handshakes), and a doubling follows only a rate a quarter above
        it: each connection was capped, not the line. A rate that falls lowers the
        baseline, so the file probes again when the line frees up (another download
        ended). Nothing is added while the event loop wakes late (``elapsed`` well over
        the window), while this process keeps a core busy, nor while the machine has no
        spare core: the CPU is full, and more connections would only add work and slow
        the protocol's answers."""
        room = self.maximum - connections
        if room <= 0 or elapsed > WINDOW * 1.5 or rate <= 0:
            return 0
        spare = idle / elapsed >= SPARE_CPU
        if spare and cpu / elapsed < IDLE_CPU and rate / max(connections, 1) < SLOW_CONNECTION:
            self.before_adding = rate
            return room
        baseline = self.before_adding
        if baseline is None or rate * DOUBLING_GAIN < baseline:
            self.before_adding = rate
            return 0
        if not spare or cpu / elapsed >= BUSY_CPU or rate < baseline * DOUBLING_GAIN:
            return 0
        self.before_adding = rate
        return min(connections, room)
