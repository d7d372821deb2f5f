"""The bandwidth cap when it changes under waiting downloads: a change wakes them, and
what they still owe is paid at the new rate (or not at all when the cap is lifted)."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.transfer.ratelimit import MAX_BYTES_PER_SECOND, RateLimiter

SLOW = st.integers(1, 1000)  # bytes/s at which the consumers below would wait for minutes
FAST = st.sampled_from([None, 0, 10**9, MAX_BYTES_PER_SECOND, 10**400])


@settings(max_examples=40, deadline=None, database=None)
@given(
    slow=SLOW,
    then=FAST,
    waiters=st.integers(1, 8),
    chunk=st.integers(64 * 1024, 4 << 20),
)
def test_lifting_or_raising_the_cap_wakes_every_waiter(
    slow: int, then: int | None, waiters: int, chunk: int
) -> None:
    async def scenario() -> None:
        limiter = RateLimiter(slow)
        done = 0

        async def download() -> None:
            nonlocal done
            await limiter.consume(chunk)
            await limiter.consume(chunk)
            done += 1

        with anyio.fail_after(20):  # at the slow rate they would need >= 2 minutes
            async with anyio.create_task_group() as group:
                for _ in range(waiters):
                    group.start_soon(download)
                await anyio.wait_all_tasks_blocked()
                limiter.set_rate(then)
        assert done == waiters

    anyio.run(scenario)


@settings(max_examples=20, deadline=None, database=None)
@given(rates=st.lists(st.integers(0, 10**500) | st.none(), min_size=1, max_size=6))
def test_any_sequence_of_caps_is_safe(rates: list[int | None]) -> None:
    """Whatever a caller sets, later downloads never fail (10**400 once raised an
    OverflowError in every one) and the cap stays within its bound."""

    async def scenario() -> None:
        limiter = RateLimiter(rates[0])
        for rate in rates[1:]:
            limiter.set_rate(rate)
            assert limiter.bytes_per_second is None or (
                1 <= limiter.bytes_per_second <= MAX_BYTES_PER_SECOND
            )
        limiter.set_rate(10**12)  # fast enough to finish at once, whatever came before
        with anyio.fail_after(20):
            await limiter.consume(1 << 20)

    anyio.run(scenario)


@pytest.mark.parametrize("new_rate", [2_000_000, 4_000_000])
def test_a_waiter_pays_what_it_owes_at_the_new_rate(new_rate: int) -> None:
    """Not woken for free: 1 MB owed at the new cap takes about 1 MB / new cap."""

    async def scenario() -> float:
        limiter = RateLimiter(1)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(limiter.consume, 1_000_000)
                await anyio.wait_all_tasks_blocked()
                started = anyio.current_time()
                limiter.set_rate(new_rate)
        return anyio.current_time() - started

    waited = anyio.run(scenario)
    # Lower bound only (a slow machine only waits longer): the debt is not forgiven.
    assert waited >= 0.9 * (1_000_000 - new_rate / 4) / new_rate
