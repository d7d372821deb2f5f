"""Runs one task: wait its turn for a download slot, take the cross-process task lock
(waiting for another process's install, or taking over from a stalled one), then
install (``sidecar.core.installing``); and the limits setLimits changes. Data flows one
way: manager → runner → installing → filefetch → registry."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from sidecar.config import Settings
from sidecar.core.filefetch import LOCK_POLL
from sidecar.core.installing import LockLost, install_locked
from sidecar.core.tasks import TaskRuntime
from sidecar.core.url_quota import MakeRoom
from sidecar.errors import InvalidState
from sidecar.store.layout import HomeLayout
from sidecar.store.locks import OwnedLock
from sidecar.store.registry import Registry
from sidecar.transfer.client import TransferClient
from sidecar.wire import LimitsResult, SetLimitsParams, TaskState

log = logging.getLogger(__name__)

TAKEOVER_ROUNDS = 3

SetState = Callable[[TaskRuntime, TaskState], Awaitable[None]]


class AlreadyInstalled(Exception):
    """Another process (or an earlier run) installed this version meanwhile."""


class Line:
    """Tasks reach the download slots in the order they were started (a requirement
    before the model that needs it), whatever thread hops each makes on its way there."""

    def __init__(self) -> None:
        self._waiting: list[TaskRuntime] = []
        self._changed = anyio.Event()

    def join(self, task: TaskRuntime) -> None:
        self.leave(task)
        self._waiting.append(task)

    def leave(self, task: TaskRuntime) -> None:
        if task in self._waiting:
            self._waiting.remove(task)
            self._changed.set()
            self._changed = anyio.Event()

    async def my_turn(self, task: TaskRuntime) -> None:
        while task in self._waiting and self._waiting[0] is not task:
            await self._changed.wait()


class TaskRunner:
    def __init__(
        self,
        settings: Settings,
        layout: HomeLayout,
        registry: Registry,
        transfer: TransferClient,
        set_state: SetState,
        make_room: MakeRoom,
    ) -> None:
        self.settings = settings
        self.make_room = make_room
        self.layout = layout
        self.registry = registry
        self.transfer = transfer
        self.set_state = set_state
        # CapacityLimiters, not semaphores: setLimits changes their size at run time.
        self.slots = anyio.CapacityLimiter(settings.max_concurrent_tasks)
        self.line = Line()  # the slots are taken in the order the tasks were started
        self.rate = settings.max_bytes_per_second
        self.max_connections_per_file = settings.max_connections_per_file

    async def run(self, task: TaskRuntime) -> None:
        """Install ``task``'s version; raises ModelManagerError on failure."""
        if task.after is not None and not task.after.finished.is_set():
            self.line.leave(task)  # never hold the line while waiting for another task
            task.waiting_for = f"{task.after.model_id}@{task.after.version} to finish first"
            await self.set_state(task, TaskState.QUEUED)
            await task.after.finished.wait()
            self.line.join(task)
        task.waiting_for = "a free download slot"
        await self.set_state(task, TaskState.QUEUED)
        await self.line.my_turn(task)
        self.line.leave(task)  # no await until the limiter has it: the next waits behind
        async with self.slots:
            for _ in range(TAKEOVER_ROUNDS):
                lock = OwnedLock(
                    self.layout.task_lock(task.model_id, task.version),
                    task.model_id,
                    task.version,
                    self.settings.lock_timeout_ms,
                )
                try:
                    await self._acquire(task, lock)
                    task.waiting_for = None
                    async with anyio.create_task_group() as refreshers:
                        refreshers.start_soon(self._keep_fresh, lock)
                        await install_locked(self, task, lock)
                        refreshers.cancel_scope.cancel()
                    return
                except AlreadyInstalled:
                    log.info("%s@%s was installed by another process", task.model_id, task.version)
                    return
                except Exception as exc:
                    if not _caused_by(exc, LockLost):
                        raise
                    log.warning(
                        "%s@%s: we stalled past the lock timeout and another process took "
                        "over; waiting for it", task.model_id, task.version,
                    )  # fmt: skip
                finally:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(lock.release)
            raise InvalidState(f"{task.model_id}@{task.version}: lost the task lock repeatedly")

    async def set_limits(self, params: SetLimitsParams) -> LimitsResult:
        """The cap applies at once; connection counts to what starts from now on."""
        if params.max_bytes_per_second is not None:
            self.rate = params.max_bytes_per_second or None
        if params.max_concurrent_tasks is not None:
            self.slots.total_tokens = params.max_concurrent_tasks
        if params.max_connections_per_file is not None:
            self.max_connections_per_file = params.max_connections_per_file
        await self.transfer.set_limits(self.rate, self.max_connections_per_file)
        return LimitsResult(
            max_bytes_per_second=self.rate or 0,
            max_concurrent_tasks=int(self.slots.total_tokens),
            max_connections_per_file=self.max_connections_per_file,
        )

    def is_installed(self, task: TaskRuntime) -> bool:
        entry = self.registry.installed(task.model_id, task.version)
        # A repair runs on an installed version: it re-hashes what is there.
        return entry is not None and entry.state == "ready" and not task.repair

    async def _acquire(self, task: TaskRuntime, lock: OwnedLock) -> None:
        while not await anyio.to_thread.run_sync(lock.try_acquire):
            holder = await anyio.to_thread.run_sync(lock.holder)
            who = f"process {holder.pid}" if holder else "another process"
            waiting_for = f"{who} installing {task.model_id}@{task.version}"
            if task.waiting_for != waiting_for:
                task.waiting_for = waiting_for
                await self.set_state(task, TaskState.QUEUED)
            await anyio.sleep(LOCK_POLL)
            await anyio.to_thread.run_sync(self.registry.reload_if_changed)
            if self.is_installed(task):
                raise AlreadyInstalled
        await anyio.to_thread.run_sync(self.registry.reload_if_changed)
        if self.is_installed(task):
            raise AlreadyInstalled

    async def _keep_fresh(self, lock: OwnedLock) -> None:
        while True:
            await anyio.sleep(self.settings.lock_refresh)
            if not await anyio.to_thread.run_sync(lock.still_held):
                raise LockLost
            await anyio.to_thread.run_sync(lock.refresh)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_caused_by(inner, kind) for inner in exc.exceptions)
    return False
