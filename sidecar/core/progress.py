"""What a task's progress may claim: bytes on disk that a resume will keep, and a
speed smoothed over a window of seconds (so the ETA does not swing with every burst)."""

from __future__ import annotations

import collections
import os
import stat
import time
from pathlib import Path

from sidecar.store.layout import HomeLayout
from sidecar.transfer.plan import merge
from sidecar.wire import PartRecord

SPEED_WINDOW = 5.0  # seconds of samples the shown speed averages over
SPEED_KNOWN_AFTER = 0.3  # a speed (and an ETA) is shown once the samples span this much
MAX_RECORD_BYTES = 16 * 1024 * 1024


def verified_part_bytes(part: Path, expected_size: int | None = None) -> int:
    """Bytes of ``part`` a resume keeps (blocking). A part written in segments is
    pre-sized to the whole file: only the ranges its record lists count. A part written
    as one stream is its prefix, which its record (written before the first byte)
    vouches for. A part without a record is one a segmented download pre-sized and
    never recorded: nothing of it counts."""
    try:
        info = os.stat(part, follow_symlinks=False)
    except OSError:
        return 0
    if not stat.S_ISREG(info.st_mode):
        return 0
    record = _read_record(part.with_name(part.name + ".json"))
    if record is None:
        return 0
    size = info.st_size
    if record.done is not None:
        counted = sum(end - start for start, end in merge(list(record.done)))
        size = min(size, counted)
    if expected_size is not None:
        size = min(size, expected_size)
    return max(0, size)


def _read_record(path: Path) -> PartRecord | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
        if len(data) > MAX_RECORD_BYTES:
            return None
        return PartRecord.model_validate_json(data)
    except (OSError, ValueError):
        return None


def version_bytes_on_disk(layout: HomeLayout, model_id: str, version: str) -> int:
    """Verified bytes of every part of ``model_id@version`` (blocking): what a task that
    has not read its manifest yet can already show."""
    prefix = layout.part_prefix(model_id, version)
    try:
        paths = list(layout.temp.iterdir())
    except OSError:
        return 0
    return sum(
        verified_part_bytes(path)
        for path in paths
        if path.name.startswith(prefix) and path.name.endswith(".part")
    )


class SpeedWindow:
    """Bytes per second over the last ``SPEED_WINDOW`` seconds of samples."""

    def __init__(self, window: float = SPEED_WINDOW) -> None:
        self.window = window
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, count: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._samples and count < self._samples[-1][1]:
            self._samples.clear()  # the part started over: old samples say nothing now
        self._samples.append((now, count))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def speed(self) -> float | None:
        """None until the samples span ``SPEED_KNOWN_AFTER`` seconds."""
        if len(self._samples) < 2:
            return None
        (first_time, first), (last_time, last) = self._samples[0], self._samples[-1]
        if last_time - first_time < SPEED_KNOWN_AFTER:
            return None
        return (last - first) / (last_time - first_time)

    def reset(self) -> None:
        self._samples.clear()
