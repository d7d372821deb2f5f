"""Which byte ranges of a file are on disk, and which to fetch next.

Pure bookkeeping (no I/O), so the planner can be tested on its own. Ranges are
half-open ``[start, end)``. A unit in flight can be cut short by ``split_tail``
so a slow connection at the end does not hold up the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(eq=False)
class Unit:
    start: int
    end: int
    position: int = -1

    def __post_init__(self) -> None:
        if self.position < 0:
            self.position = self.start

    @property
    def remaining(self) -> int:
        return max(0, self.end - self.position)


def merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def subtract(span: tuple[int, int], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of ``span`` not covered by the (merged) ``taken`` ranges."""
    start, end = span
    gaps = []
    for a, b in taken:
        if b <= start or a >= end:
            continue
        if a > start:
            gaps.append((start, a))
        start = max(start, b)
    if start < end:
        gaps.append((start, end))
    return gaps


class SegmentPlan:
    def __init__(
        self, total: int, done: list[tuple[int, int]], unit_size: int, align: int = 1
    ) -> None:
        self.total = total
        self.unit_size = max(1, unit_size)
        # Units end and tails split on multiples of ``align`` (the piece size) where that
        # costs nothing, so a connection streams whole pieces and hashes them as they
        # arrive instead of reading them back from the disk.
        self.align = max(1, align)
        self.done = merge([(max(0, a), min(total, b)) for a, b in done])
        self.in_flight: list[Unit] = []

    @property
    def done_bytes(self) -> int:
        return sum(b - a for a, b in self.done)

    @property
    def complete(self) -> bool:
        return self.done == [(0, self.total)] or self.total == 0

    def contiguous_end(self) -> int:
        return self.done[0][1] if self.done and self.done[0][0] == 0 else 0

    def mark_done(self, start: int, end: int) -> None:
        self.done = merge([*self.done, (start, end)])

    def forget(self, start: int, end: int) -> None:
        """Bytes on disk that turned out wrong: a gap again."""
        self.done = [gap for span in self.done for gap in subtract(span, [(start, end)])]

    def next_unit(self, min_split: int) -> Unit | None:
        """The next range to fetch: a gap nobody works on, else half of the largest
        unit still in flight (``min_split`` bytes at least on each side)."""
        taken = merge([*self.done, *((u.position, u.end) for u in self.in_flight)])
        gaps = subtract((0, self.total), taken)
        if gaps:
            start, end = gaps[0]
            stop = start + self.unit_size
            if (aligned := stop // self.align * self.align) > start:
                stop = aligned
            unit: Unit | None = Unit(start, min(end, stop))
        else:
            unit = self._split_tail(min_split)
        if unit is not None:
            self.in_flight.append(unit)
        return unit

    def _split_tail(self, min_split: int) -> Unit | None:
        candidates = [u for u in self.in_flight if u.remaining >= 2 * min_split]
        if not candidates:
            return None
        slowest = max(candidates, key=lambda u: u.remaining)
        middle = slowest.position + slowest.remaining // 2
        aligned = -(-middle // self.align) * self.align
        if slowest.end - aligned >= min_split:
            middle = aligned
        stolen = Unit(middle, slowest.end)
        slowest.end = middle
        return stolen

    def release(self, unit: Unit) -> None:
        """Forget a unit (finished or failed): what it did not write becomes a gap."""
        if unit in self.in_flight:
            self.in_flight.remove(unit)
