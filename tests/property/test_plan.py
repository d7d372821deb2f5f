"""The segment planner: whatever the file, what is on disk and the piece alignment,
connections taking units and tails never fetch a byte twice at once and leave no gap;
units end on piece boundaries wherever that costs nothing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sidecar.transfer.plan import SegmentPlan, Unit

MIN_SPLIT = 8


@st.composite
def plans(draw: st.DrawFn) -> tuple[SegmentPlan, list[int]]:
    total = draw(st.integers(1, 2000))
    points = sorted(draw(st.lists(st.integers(0, total), max_size=6)))
    done = list(zip(points[::2], points[1::2], strict=False))
    unit_size = draw(st.integers(1, 300))
    align = draw(st.sampled_from([1, 16, 64, 100]))
    steps = draw(st.lists(st.integers(0, 400), min_size=1, max_size=60))
    return SegmentPlan(total, done, unit_size, align), steps


@given(plans())
def test_units_cover_the_file_once(case: tuple[SegmentPlan, list[int]]) -> None:
    plan, steps = case
    active: list[Unit] = []
    for step in steps * 50:
        if plan.complete:
            break
        if step % 3 == 0 or not active:  # a connection asks for work
            unit = plan.next_unit(MIN_SPLIT)
            if unit is not None:
                assert 0 <= unit.position < unit.end <= plan.total
                for other in active:  # nobody else is fetching these bytes
                    assert unit.end <= other.position or unit.position >= other.end
                active.append(unit)
                continue
        unit = active[step % len(active)]  # a connection writes some of its unit
        size = min(unit.remaining, 1 + step % 97)
        plan.mark_done(unit.position, unit.position + size)
        unit.position += size
        if unit.remaining == 0:
            active.remove(unit)
            plan.release(unit)
    for left in active:  # the connections finish their units, then one takes the rest
        plan.mark_done(left.position, left.end)
        plan.release(left)
    while (unit := plan.next_unit(MIN_SPLIT)) is not None:
        plan.mark_done(unit.position, unit.end)
        plan.release(unit)
    assert plan.complete


def test_gap_units_and_tail_splits_end_on_piece_boundaries() -> None:
    plan = SegmentPlan(1000, [(0, 30)], unit_size=100, align=64)
    first = plan.next_unit(MIN_SPLIT)
    assert first is not None and (first.start, first.end) == (30, 128)
    second = plan.next_unit(MIN_SPLIT)
    assert second is not None and (second.start, second.end) == (128, 192)
    whole = SegmentPlan(1000, [(0, 872)], unit_size=1000, align=64)
    tail = whole.next_unit(MIN_SPLIT)
    assert tail is not None and (tail.start, tail.end) == (872, 1000)
    stolen = whole.next_unit(MIN_SPLIT)
    # Half of the 128 bytes left is 936; the next piece boundary is 960.
    assert stolen is not None and (stolen.start, stolen.end) == (960, 1000)
    assert tail.end == 960
