"""The connection count of one large file, from what each window measured."""

from __future__ import annotations

from sidecar.transfer.ramp import WINDOW, Ramp

MB = 1_000_000
IDLE = 1.5 * WINDOW  # the machine left a core and a half unused


def test_connections_capped_one_by_one_open_all_at_once() -> None:
    ramp = Ramp(maximum=16)
    # 4 connections at 22 MB/s each (a CDN's cap), this process nearly idle.
    assert ramp.more(4, 88 * MB, WINDOW, cpu=0.1 * WINDOW, idle=IDLE) == 12


def test_a_busy_cpu_adds_nothing() -> None:
    ramp = Ramp(maximum=16)
    # Each connection slow too, but because TLS keeps a core and a half busy.
    assert ramp.more(4, 120 * MB, WINDOW, cpu=1.5 * WINDOW, idle=IDLE) == 0
    # Still no more once the rate rises: the CPU, not the line, sets it.
    assert ramp.more(4, 400 * MB, WINDOW, cpu=1.2 * WINDOW, idle=IDLE) == 0
    assert ramp.more(4, 500 * MB, WINDOW, cpu=0.8 * WINDOW, idle=IDLE) == 4


def test_the_first_window_only_sets_the_baseline() -> None:
    ramp = Ramp(maximum=16)
    # Handshakes and slow start: a low rate, a CPU not yet busy.
    assert ramp.more(4, 70 * MB, WINDOW, cpu=0.7 * WINDOW, idle=IDLE) == 0
    assert ramp.more(4, 400 * MB, WINDOW, cpu=1.3 * WINDOW, idle=IDLE) == 0  # then busy: stays at 4


def test_fast_connections_double_while_it_pays() -> None:
    ramp = Ramp(maximum=16)
    assert ramp.more(4, 600 * MB, WINDOW, cpu=0.6 * WINDOW, idle=IDLE) == 0  # the baseline
    assert ramp.more(4, 800 * MB, WINDOW, cpu=0.8 * WINDOW, idle=IDLE) == 4
    assert ramp.more(8, 900 * MB, WINDOW, cpu=0.9 * WINDOW, idle=IDLE) == 0  # +12 %: not worth it
    assert ramp.more(8, 900 * MB, WINDOW, cpu=0.9 * WINDOW, idle=IDLE) == 0
    # Another download ended: the rate jumps, and a doubling is worth trying again.
    assert ramp.more(8, 1200 * MB, WINDOW, cpu=0.9 * WINDOW, idle=IDLE) == 8
    assert ramp.more(16, 1600 * MB, WINDOW, cpu=0.9 * WINDOW, idle=IDLE) == 0  # at the maximum


def test_a_falling_rate_lowers_the_bar() -> None:
    ramp = Ramp(maximum=16)
    assert ramp.more(4, 600 * MB, WINDOW, cpu=0.9 * WINDOW, idle=IDLE) == 0
    assert ramp.more(4, 800 * MB, WINDOW, cpu=0.9 * WINDOW, idle=IDLE) == 4
    assert ramp.more(8, 300 * MB, WINDOW, cpu=0.9 * WINDOW, idle=IDLE) == 0  # the line got busy
    assert (
        ramp.more(8, 400 * MB, WINDOW, cpu=0.9 * WINDOW, idle=IDLE) == 8
    )  # +33 % over the new baseline


def test_nothing_is_added_while_the_loop_wakes_late_or_nothing_moves() -> None:
    ramp = Ramp(maximum=16)
    assert ramp.more(4, 88 * MB, 2 * WINDOW, cpu=0.0, idle=IDLE) == 0
    assert ramp.more(4, 0.0, WINDOW, cpu=0.0, idle=IDLE) == 0
    assert Ramp(maximum=4).more(4, 88 * MB, WINDOW, cpu=0.0, idle=IDLE) == 0


def test_nothing_is_added_while_the_machine_has_no_spare_core() -> None:
    ramp = Ramp(maximum=16)
    # At background priority the worker gets little CPU while the server (on loopback)
    # or the app takes the rest: it looks idle and each connection slow, yet more
    # connections would only add work.
    assert ramp.more(4, 150 * MB, WINDOW, cpu=0.3 * WINDOW, idle=0.2 * WINDOW) == 0
    assert ramp.more(4, 330 * MB, WINDOW, cpu=0.8 * WINDOW, idle=0.1 * WINDOW) == 0
    # A core frees up: the same connections, capped one by one, all open at once.
    assert ramp.more(4, 150 * MB, WINDOW, cpu=0.3 * WINDOW, idle=IDLE) == 12
