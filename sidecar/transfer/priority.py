"""Downloads are background work: the engine process runs at a lower priority, so the
front process (which answers getModelPath), the app and the user's own programs come
first when the CPU is short."""

from __future__ import annotations

import logging
import os
import sys

import psutil

log = logging.getLogger(__name__)

BACKGROUND_NICENESS = 10


def run_in_background() -> None:
    """Lower this process. Call it before any thread starts: on Linux a nice value
    is per thread, and a new thread inherits its creator's."""
    try:
        if sys.platform == "win32":
            psutil.Process().nice(psutil.BELOW_NORMAL_PRIORITY_CLASS)
        else:
            os.nice(BACKGROUND_NICENESS)
    except (OSError, psutil.Error) as exc:  # a sandbox may refuse it: run as we are
        log.info("could not lower the engine's priority: %s", exc)
