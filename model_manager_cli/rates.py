"""What the progress bars show about speed and time: a speed smoothed over a window of
several seconds (the sidecar's own figure follows each burst of bytes, and under a
steady 4 MB/s cap it swung between 0.38 and 12 MB/s), and per task the elapsed time and
average speed once it ends."""

from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.speed import SPEED_WINDOW, SpeedWindow

MIN_SPAN = 1.0  # below this much history the sidecar's own figure is shown


@dataclass
class TaskClock:
    """Bytes over time for one task, as this CLI saw them."""

    started: float
    first_bytes: int
    window: SpeedWindow = field(default_factory=lambda: SpeedWindow(SPEED_WINDOW, MIN_SPAN))
    ended: float | None = None
    last_bytes: int = 0

    def observe(self, now: float, done: int) -> None:
        if self.ended is None:
            self.window.add(done, now)
            self.last_bytes = done

    def speed(self) -> float | None:
        """Bytes per second over the last SPEED_WINDOW seconds; None with too little history."""
        return self.window.speed()

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
