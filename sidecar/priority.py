"""Downloads are background work: the protocol thread, the app and the user's own
programs come first when the CPU is short.

On Linux each thread has its own nice value, inherited by the threads it starts. The
event-loop thread (which parses every downloaded byte's HTTP framing) lowers its own
once the stdin thread exists, so the stdin thread keeps the normal priority and
answers ``getModelPath`` promptly even with both cores busy. Elsewhere a nice value
is per process and would slow the stdin thread too, so nothing changes there."""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

BACKGROUND_NICENESS = 5
# The stdin thread waits at most this long for the GIL held by the loop (default 5 ms).
GIL_SWITCH_INTERVAL = 0.0005


def favour_the_protocol() -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + BACKGROUND_NICENESS))
    except OSError as exc:  # a sandbox may refuse it: run at the normal priority
        log.info("could not lower the download thread's priority: %s", exc)
