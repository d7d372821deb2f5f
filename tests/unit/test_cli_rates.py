"""The CLI's speed figure (issue 15, item 6): under a steady cap, bytes land in bursts
(the sidecar reports a part's size after each write of up to a MiB), and a speed over
the last instant swung between 0.38 and 12 MB/s at 4 MB/s. Over the window it is steady."""

from __future__ import annotations

import random

from model_manager_cli.rates import SPEED_WINDOW, TaskClock, clock_text

CAP = 4_000_000  # bytes per second


def bursty_samples(seconds: float, seed: int = 1) -> list[tuple[float, int]]:
    """What the CLI sees ~10 times a second: a 4 MB/s stream whose bytes land in bursts
    at uneven moments 0.1 to 0.6 s apart (the sidecar's writes and progress lines)."""
    rng = random.Random(seed)
    t, landed, samples = 0.0, 0, []
    next_burst = 0.0
    while t < seconds:
        t += 0.1
        if t >= next_burst:
            landed = int(CAP * t)  # everything the cap let through so far lands at once
            next_burst = t + rng.uniform(0.1, 0.6)
        samples.append((t, landed))
    return samples


def test_the_speed_shown_is_steady_under_a_steady_cap():
    clock = TaskClock(started=0.0, first_bytes=0)
    instant, shown = [], []
    previous = (0.0, 0)
    for now, done in bursty_samples(40):
        clock.observe(now, done)
        instant.append((done - previous[1]) / (now - previous[0]))
        previous = (now, done)
        if now >= SPEED_WINDOW + 1 and (speed := clock.speed()) is not None:
            shown.append(speed)
    # The instant figure is what swung; the window's stays within 20 % of the cap.
    assert max(instant) > 2 * CAP and min(instant) < CAP / 2
    assert shown and all(0.8 * CAP <= speed <= 1.2 * CAP for speed in shown), (
        min(shown), max(shown),
    )  # fmt: skip


def test_a_stall_brings_the_speed_down_and_history_is_bounded():
    clock = TaskClock(started=0.0, first_bytes=0)
    for now, done in bursty_samples(10):
        clock.observe(now, done)
    last = clock.window.samples[-1][1]
    for step in range(1, 80):
        clock.observe(10 + step * 0.1, last)
    assert clock.speed() == 0.0
    assert len(clock.window.samples) <= SPEED_WINDOW / 0.1 + 2


def test_too_little_history_gives_no_speed_and_the_end_gives_the_average():
    clock = TaskClock(started=100.0, first_bytes=1_000_000)  # resumed with 1 MB on disk
    clock.observe(100.0, 1_000_000)
    clock.observe(100.5, 3_000_000)
    assert clock.speed() is None
    clock.observe(110.0, 41_000_000)
    clock.end(110.0)
    clock.observe(111.0, 99_000_000)  # a late line after the end changes nothing
    assert clock.elapsed == 10.0
    assert clock.downloaded == 40_000_000
    assert clock.average() == 4_000_000
    assert clock_text(3725) == "1:02:05"
