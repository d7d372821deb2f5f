"""What the progress bars show about speed and time: a speed smoothed over a window of
several seconds (the sidecar's own figure follows each burst of bytes, and under a
steady 4 MB/s cap it swung between 0.38 and 12 MB/s), and per task the elapsed time and
average speed once it ends."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

SPEED_WINDOW = 5.0  # seconds of samples behind the speed shown
MIN_SPAN = 1.0  # below this much history the sidecar's own figure is shown


@dataclass
class TaskClock:
    """Bytes over time for one task, as this CLI saw them."""

    started: float
    first_bytes: int
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    ended: float | None = None
    last_bytes: int = 0

    def observe(self, now: float, done: int) -> None:
        if self.ended is not None:
            return
        if self.samples and done < self.samples[-1][1]:
            self.samples.clear()  # counted afresh (a file started over): a new window
        self.samples.append((now, done))
        self.last_bytes = done
        # Keep one sample at or before the window's start, so the window is full.
        while len(self.samples) > 2 and self.samples[1][0] <= now - SPEED_WINDOW:
            self.samples.popleft()

    def speed(self) -> float | None:
        """Bytes per second over the last SPEED_WINDOW seconds; None with too little history."""
        if len(self.samples) < 2:
            return None
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        if t1 - t0 < MIN_SPAN:
            return None
        return max(0.0, (b1 - b0) / (t1 - t0))

    def end(self, now: float) -> None:
        if self.ended is None:
            self.ended = now

    @property
    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else self.started) - self.started

    @property
    def downloaded(self) -> int:
        """Bytes this run fetched (a resumed task's earlier bytes are not counted)."""
        return max(0, self.last_bytes - self.first_bytes)

    def average(self) -> float | None:
        return self.downloaded / self.elapsed if self.elapsed > 0 else None


def clock_text(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
