"""moveStore on a running sidecar: pause the downloads, move the home
(``sidecar.store.relocate``), open the new one in place of the old, and let the
downloads go on there; the app learns every new path from ``models.changed``. The
owner's lock and endpoint move too (``sidecar.engine.owned``): processes sent to the new
home by the forwarding record attach to this one."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio

from sidecar.core.library import Library
from sidecar.core.tasks import TaskRuntime, TaskStore
from sidecar.errors import InvalidState, ModelManagerError
from sidecar.logs import setup_logging
from sidecar.store.forwarding import forward_of
from sidecar.store.layout import HomeLayout
from sidecar.store.registry import Registry
from sidecar.store.relocate import check_no_other_writer, check_target, relocate
from sidecar.wire import ModelsChanged, TaskState
from sidecar.wire_home import MoveProgress, MoveStoreResult

if TYPE_CHECKING:
    from sidecar.core.manager import Manager

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.25  # seconds between store.moveProgress notifications
RUNNING = {TaskState.QUEUED, TaskState.DOWNLOADING}
SETTLED = {TaskState.PAUSED, TaskState.READY, TaskState.FAILED, TaskState.CANCELLED}


class Ownership(Protocol):
    """The owner's hold on its home (``sidecar.engine.owned.Ownership``)."""

    def claim(self, home: Path) -> None: ...  # blocking: from the moving thread

    async def settle(self, switched: bool) -> None: ...


async def move_store(manager: Manager, to: str) -> MoveStoreResult:
    if manager.moving:
        raise InvalidState("the model home is being moved already", reason="move_in_progress")
    manager.moving = True
    try:
        return await _move(manager, to)
    finally:
        manager.moving = False


async def _move(manager: Manager, to: str) -> MoveStoreResult:
    previous = manager.layout.root
    target = await anyio.to_thread.run_sync(check_target, previous, to)
    await anyio.to_thread.run_sync(check_no_other_writer, previous)
    paused = await _pause_all(manager)
    _close_log_file()
    setup_logging(None, manager.settings.log_level)  # the log file moves too
    ownership = manager.ownership
    try:
        outcome = await anyio.to_thread.run_sync(
            relocate, previous, target, [t.task_id for t in paused], _reporter(manager, target),
            ownership.claim if ownership else None,
        )  # fmt: skip
    except BaseException:
        setup_logging(manager.layout, manager.settings.log_level)
        _resume(manager, [t.task_id for t in paused])
        raise
    finally:
        if ownership is not None:  # the switch decides which home this process owns
            with anyio.CancelScope(shield=True):
                switched = await anyio.to_thread.run_sync(forward_of, previous) == target
                await ownership.settle(switched)
    await _rehome(manager, outcome.home)
    setup_logging(manager.layout, manager.settings.log_level)
    log.info("the model home is now %s (was %s)", outcome.home, previous)
    resumed = _resume(manager, outcome.paused_tasks)
    await _announce(manager)
    return MoveStoreResult(
        home=str(outcome.home), previous_home=str(previous), method=outcome.method,
        bytes_copied=outcome.bytes_copied, files=outcome.files, resumed_tasks=resumed,
    )  # fmt: skip


def _reporter(manager: Manager, target: Path) -> Callable[[str, int, int], None]:
    """store.moveProgress from the copying thread, a few a second and at each end."""
    last = 0.0

    def report(phase: str, done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_INTERVAL and done < total:
            return
        last = now
        update = MoveProgress(to=str(target), phase=phase, bytes_done=done, bytes_total=total)

        async def send() -> None:
            await manager.notify("store.moveProgress", update.wire())

        anyio.from_thread.run(send)

    return report


def _close_log_file() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()


async def _pause_all(manager: Manager) -> list[TaskRuntime]:
    """Every running download paused (its part stays and moves along), and every
    verifying one finished, before a byte is moved."""
    paused = []
    for task in list(manager.active.values()):
        if task.state in RUNNING:
            manager.pause(task.task_id)
            paused.append(task)
    for task in list(manager.active.values()):
        while task.scope is not None or task.state not in SETTLED:  # noqa: ASYNC110
            await anyio.sleep(0.02)  # no event marks "paused" (task.finished is for the end)
    return paused


def _resume(manager: Manager, task_ids: list[str]) -> list[str]:
    manager.moving = False  # tasks may start again
    resumed = []
    for task_id in task_ids:
        task = manager.tasks.get(task_id)
        if task is None or task.state != TaskState.PAUSED:
            continue
        try:
            manager.resume(task_id)
        except ModelManagerError as exc:  # offline, say: it stays paused
            log.warning("cannot resume %s after the move: %s", task_id, exc.message)
            continue
        resumed.append(task_id)
    return resumed


async def _rehome(manager: Manager, home: Path) -> None:
    """Open the new home in place of the old: every part that names a path."""
    settings = dataclasses.replace(manager.settings, home=home)
    layout = HomeLayout(settings.home)
    registry = Registry(layout)
    await anyio.to_thread.run_sync(registry.load)
    manager.settings, manager.layout, manager.registry = settings, layout, registry
    manager.store = TaskStore(layout)
    manager.catalog.settings = settings
    manager.catalog.cache_path = layout.cache / "catalog.json"
    manager.ranking.settings = settings
    manager.ranking.cache_dir = layout.cache
    manager.keeper.rehome(layout, registry)
    manager.library = Library(
        settings, layout, registry, lambda: manager.catalog, manager.notify, manager.active,
        manager.failed,
    )  # fmt: skip
    runner = manager.runner
    runner.settings, runner.layout, runner.registry = settings, layout, registry
    await manager.transfer.use_settings(settings)


async def _announce(manager: Manager) -> None:
    """One models.changed per installed version, with its new folder."""
    for model_id, model in list(manager.registry.document.models.items()):
        for version, entry in list(model.versions.items()):
            changed = ModelsChanged(
                model_id=model_id, version=version, state=entry.state,
                path=str(manager.layout.model_dir(model_id, version)),
            )  # fmt: skip
            await manager.notify("models.changed", changed.wire())
