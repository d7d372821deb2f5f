"""Downloads are background work: the protocol threads, the app and the user's own
programs come first when the CPU is short.

On Linux each thread has its own nice value, inherited by the threads it starts.
Once the stdin reader and its answer writer run, every other thread of the process
(the event loop, which parses every downloaded byte's HTTP framing, and the worker
threads that write and hash) goes to nice +10, and the threads the loop starts later
inherit that. The two protocol threads keep the normal priority and answer
``getModelPath`` promptly even with every core busy. Elsewhere a nice value is per
process and would slow them too, so only the GIL switch interval changes there."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

BACKGROUND_NICENESS = 10  # +5 left the getModelPath p99 about 0.4 ms higher under load
# How long a thread waits for the GIL before asking its holder to let go (default 5 ms):
# the stdin thread's longest wait behind the loop.
GIL_SWITCH_INTERVAL = 0.0005


def favour_the_protocol(protocol_threads: set[int]) -> None:
    """Lower every thread of this process but ``protocol_threads`` (native ids)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    if sys.platform != "linux":
        return
    try:
        threads = [int(entry.name) for entry in Path("/proc/self/task").iterdir()]
    except OSError as exc:
        log.info("cannot list this process's threads: %s", exc)
        return
    for thread in threads:
        if thread in protocol_threads:
            continue
        try:
            current = os.getpriority(os.PRIO_PROCESS, thread)
            os.setpriority(os.PRIO_PROCESS, thread, min(19, current + BACKGROUND_NICENESS))
        except OSError as exc:  # the thread just ended, or a sandbox refuses it
            log.info("could not lower thread %d's priority: %s", thread, exc)
