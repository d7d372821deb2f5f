"""Downloads are background work: the protocol thread, the app and the user's own
programs come first when the CPU is short.

On Linux each thread has its own nice value, inherited by the threads it starts.
Once the stdin thread runs, every other thread of the process (the event loop, which
parses every downloaded byte's HTTP framing, and the worker threads that write and
hash) goes to nice +5, and the threads the loop starts later inherit that; the stdin
thread keeps the normal priority and answers ``getModelPath`` promptly even with
every core busy. Elsewhere a nice value is per process and would slow the stdin
thread too, so only the GIL switch interval changes there."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

BACKGROUND_NICENESS = 5
# How long a thread waits for the GIL before asking its holder to let go (default 5 ms):
# the stdin thread's longest wait behind the loop.
GIL_SWITCH_INTERVAL = 0.0005


def favour_the_protocol(protocol_thread: int) -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    if sys.platform != "linux":
        return
    try:
        threads = [int(entry.name) for entry in Path("/proc/self/task").iterdir()]
        for thread in threads:
            if thread != protocol_thread:
                current = os.getpriority(os.PRIO_PROCESS, thread)
                os.setpriority(os.PRIO_PROCESS, thread, min(19, current + BACKGROUND_NICENESS))
    except OSError as exc:  # a sandbox may refuse it, or a thread just ended
        log.info("could not lower the download threads' priority: %s", exc)
