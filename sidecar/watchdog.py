"""Exit when the parent dies, so a crashed app leaves no orphan sidecar."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import anyio

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


def parent_gone(watched_pid: int, original_ppid: int) -> bool:
    if os.name != "nt" and watched_pid == original_ppid and os.getppid() != original_ppid:
        return True  # re-parented to init or a subreaper: our parent died
    import psutil  # here: its import (~10 ms) would delay the first answer

    try:
        return not psutil.pid_exists(watched_pid)
    except (OSError, ValueError):
        return True


async def watch_parent(watched_pid: int | None, on_gone: Callable[[], None]) -> None:
    original_ppid = os.getppid()
    pid = watched_pid if watched_pid is not None else original_ppid
    if pid <= 1:
        return  # started by init (a daemon setup): nothing to watch
    while True:
        await anyio.sleep(POLL_SECONDS)
        if parent_gone(pid, original_ppid):
            log.warning("parent process %d is gone: shutting down", pid)
            on_gone()
            return
