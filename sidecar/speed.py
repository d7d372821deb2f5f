"""A speed smoothed over a window of seconds, so a figure (and an ETA) does not swing
with every burst of bytes: the sidecar's task progress and the CLI's bars use it."""

from __future__ import annotations

import collections
import time

SPEED_WINDOW = 5.0  # seconds of samples the speed averages over


class SpeedWindow:
    """Bytes per second over the last ``window`` seconds of (time, bytes done) samples;
    unknown until the samples span ``known_after`` seconds."""

    def __init__(self, window: float = SPEED_WINDOW, known_after: float = 0.3) -> None:
        self.window = window
        self.known_after = known_after
        self.samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, count: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.samples and count < self.samples[-1][1]:
            self.samples.clear()  # counted afresh (a file started over): a new window
        self.samples.append((now, count))
        # Keep one sample at or before the window's start, so the window is full.
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()

    def speed(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (first_time, first), (last_time, last) = self.samples[0], self.samples[-1]
        if last_time - first_time < self.known_after:
            return None
        return max(0.0, (last - first) / (last_time - first_time))

    def reset(self) -> None:
        self.samples.clear()
