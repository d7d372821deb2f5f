"""The manager's own work as a service, beside the tasks: the home made ready at
start-up (what a kill left behind removed, the registry loaded), the saved tasks read
back, and the loops that reload the registry and send the tasks' progress."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from sidecar.core.progress import version_bytes_on_disk
from sidecar.store.fsutil import sweep_temp_files
from sidecar.store.locks import clean_stale_lock_files
from sidecar.store.placement import remove_legacy_parts
from sidecar.wire import TaskState
from sidecar.wire_files import PersistedTask

if TYPE_CHECKING:
    from sidecar.core.manager import Manager

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.1  # at most ~10 progress notifications a second per task
REGISTRY_POLL = 1.0


def load_tasks(manager: Manager) -> list[tuple[PersistedTask, int]]:
    """Saved tasks with the verified bytes of their parts (blocking)."""
    return [
        (t, version_bytes_on_disk(manager.layout, t.model_id, t.version))
        for t in manager.store.load()
    ]


def prepare_home(manager: Manager) -> None:
    """Blocking: run once, before the saved tasks are read back."""
    manager.layout.create()
    # Never inside models/: a model may ship files of any name.
    leftovers = [
        *sweep_temp_files(manager.layout.root, ".*.tmp"),
        *sweep_temp_files(manager.layout.metadata, ".*.tmp", recursive=True),
        *sweep_temp_files(manager.layout.cache, ".*.tmp"),
        *sweep_temp_files(manager.layout.temp, "*.tmp"),
    ]
    for path in leftovers:
        log.info("removed a temp file a kill left behind: %s", path)
    for path in remove_legacy_parts(manager.layout):
        log.info("removed a part named by an older version: %s", path.name)
    for folder in (manager.layout.task_locks, manager.layout.temp):
        for path in clean_stale_lock_files(folder):
            log.info("removed stale lock %s", path.name)
    manager.registry.load()
    manager.library.check_sizes()


async def watch_registry(manager: Manager) -> None:
    while True:
        await anyio.sleep(REGISTRY_POLL)
        if manager.moving:  # its file moves: reading it now would rebuild it empty
            continue
        try:
            await anyio.to_thread.run_sync(manager.registry.reload_if_changed)
        except OSError as exc:
            log.warning("cannot reload registry: %s", exc)


async def progress_ticker(manager: Manager) -> None:
    last_sent: dict[str, int] = {}
    while True:
        await anyio.sleep(PROGRESS_INTERVAL)
        for task in list(manager.active.values()):
            if task.state != TaskState.DOWNLOADING:
                continue
            task.sample_speed()
            if last_sent.get(task.task_id) != task.shown_bytes:
                last_sent[task.task_id] = task.shown_bytes
                snapshot = task.snapshot()
                manager.hooks.on_download_progress(snapshot)
                await manager.notify("task.progress", snapshot.wire())
