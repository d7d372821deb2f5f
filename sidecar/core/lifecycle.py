"""A task's life: its states, each one saved and notified; how it starts, runs to
ready, fails, or stops when paused or cancelled; and the tasks saved by the last run
taken up again. The manager composes it; the task methods ask it to start a task."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from sidecar.core.progress import version_bytes_on_disk
from sidecar.core.tasks import TaskRuntime, UrlSource
from sidecar.errors import InvalidState, ModelManagerError
from sidecar.manifest import check_safe_name
from sidecar.store.homefs import home_error
from sidecar.store.placement import remove_parts
from sidecar.wire import ModelsChanged, ModelState, TaskError, TaskState
from sidecar.wire_files import PersistedTask

if TYPE_CHECKING:
    from sidecar.core.manager import Manager

log = logging.getLogger(__name__)

MODEL_STATE_OF: dict[TaskState, ModelState] = {
    TaskState.QUEUED: "queued",
    TaskState.PAUSED: "paused",
    TaskState.READY: "ready",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "not_installed",
}
ACTIVE = {TaskState.QUEUED, TaskState.DOWNLOADING, TaskState.VERIFYING, TaskState.PAUSED}


class TaskLifecycle:
    """Reads the manager's parts through it: moveStore replaces some of them."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.group: TaskGroup | None = None  # the manager's, once it serves

    async def set_state(self, task: TaskRuntime, state: TaskState) -> None:
        previous, task.state = task.state, state
        if state in ACTIVE:
            self.manager.active[task.key] = task
            await self._persist(self.manager.store.save, task.persisted())
        else:
            if self.manager.active.get(task.key) is task:
                del self.manager.active[task.key]
            with anyio.CancelScope(shield=True):
                if state == TaskState.FAILED and task.raw_bytes > 0 and not task.url_source:
                    # Remembered with its partial data: `tasks` shows it after a restart,
                    # `resume` continues it, `cancel` frees the disk. (Not a plain URL's:
                    # its URL may hold a secret, kept on disk only while a task runs.)
                    await self._persist(self.manager.store.save, task.persisted())
                else:
                    await self._persist(self.manager.store.drop, task.model_id, task.version)
            task.finished.set()
            await self.manager.notify("task.progress", task.snapshot().wire())
        snapshot = task.snapshot()
        await self.manager.notify("task.state", snapshot.wire())
        if state == TaskState.DOWNLOADING:
            self.manager.hooks.on_download_start(snapshot)
        model_state = MODEL_STATE_OF.get(state)
        if model_state is not None and state != previous:
            changed = ModelsChanged(model_id=task.model_id, version=task.version, state=model_state)
            await self.manager.notify("models.changed", changed.wire())

    async def _persist(self, write: Callable[..., None], *args: Any) -> None:
        """tasks.json only helps a restart resume: a full disk must not fail the task
        (or its failure) here; the download reports the full disk itself."""
        try:
            await anyio.to_thread.run_sync(write, *args)
        except OSError as exc:
            log.warning("cannot save tasks.json: %s", exc)

    def start(self, task: TaskRuntime) -> None:
        assert self.group is not None, "manager is not serving"
        if self.manager.moving:
            raise InvalidState(
                "the model home is being moved: try again once moveStore has answered",
                reason="move_in_progress",
            )
        self.manager.tasks[task.task_id] = task
        self.manager.active[task.key] = task
        self.manager.failed.discard(task.key)
        task.finished = anyio.Event()
        task.stop_request = None
        task.error = None
        self.manager.runner.line.join(task)
        self.group.start_soon(self._run, task)

    async def _run(self, task: TaskRuntime) -> None:
        with anyio.CancelScope() as scope:
            task.scope = scope
            try:
                await self.manager.until_ready()  # the hooks, the catalog
                if not task.on_disk_known:  # the first notification shows what is on disk
                    task.show_on_disk(
                        await anyio.to_thread.run_sync(
                            version_bytes_on_disk, self.manager.layout, task.model_id, task.version
                        )
                    )
                await self.set_state(task, TaskState.QUEUED)
                if task.manifest is None and task.url_source is None:
                    await self._resolve_manifest(task)
                await self.manager.keeper.make_room_for(task)  # the quota, for a resumed task too
                await self.manager.runner.run(task)
            except Exception as exc:
                error = _domain_error(exc)
                if error is not None:
                    message = _naming(error.message, task, self.manager.required_by.get(task.key))
                    await self._fail(task, error.name, message, error.extra.get("reason"))
                else:  # a bug must fail one task, never the daemon
                    log.exception("task %s crashed", task.task_id)
                    await self._fail(task, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
                task.scope = None  # nothing runs: `resume` may start it again
                return
            finally:  # failed, paused or cancelled before its turn: the next one goes
                self.manager.runner.line.leave(task)
            task.waiting_for = None
            snapshot = task.snapshot()
            await self.set_state(task, TaskState.READY)
            self.manager.required_by.pop(task.key, None)
            self.manager.hooks.on_download_complete(snapshot)
            return
        task.scope = None
        if task.stop_request == TaskState.CANCELLED:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    remove_parts, self.manager.layout, task.model_id, task.version
                )
                task.waiting_for = None
                await self.set_state(task, TaskState.CANCELLED)
        elif task.stop_request == TaskState.PAUSED:
            with anyio.CancelScope(shield=True):
                task.waiting_for = None
                task.reset_speed()
                await self.set_state(task, TaskState.PAUSED)

    async def _fail(self, task: TaskRuntime, code: str, message: str, reason: Any = None) -> None:
        log.error(
            "task %s (%s@%s) failed: %s %s",
            task.task_id,
            task.model_id,
            task.version,
            code,
            message,
        )
        try:
            task.error = TaskError(code=code, message=message, reason=reason)
        except ValueError:  # a reason the wire does not list: the code and message say it
            task.error = TaskError(code=code, message=message)
        task.waiting_for = None
        self.manager.failed.add(task.key)
        self.manager.hooks.on_download_error(task.snapshot(), task.error)
        with anyio.CancelScope(shield=True):
            await self.set_state(task, TaskState.FAILED)

    async def _resolve_manifest(self, task: TaskRuntime) -> None:
        from sidecar.core.wording import version_not_found

        model = await self.manager.catalog.get_model(task.model_id, task.version)
        version = model.find_version(task.version)
        if version is None:
            raise version_not_found(model, task.version)
        task.manifest = version
        task.name, task.model_task = model.name, model.task

    def resume_persisted(self, persisted: PersistedTask, on_disk: int) -> None:
        try:
            check_safe_name(persisted.model_id, "modelId")
            check_safe_name(persisted.version, "version")
        except ModelManagerError:
            return
        task = TaskRuntime(model_id=persisted.model_id, version=persisted.version)
        task.task_id = persisted.task_id
        task.repair = persisted.repair
        if persisted.url and persisted.filename:
            task.url_source = UrlSource(
                persisted.url, persisted.filename, persisted.mode, persisted.sha256
            )
        task.bytes_total, task.files_total = persisted.bytes_total, persisted.files_total
        task.show_on_disk(on_disk)
        if persisted.state == TaskState.FAILED:
            if on_disk == 0:  # nothing left to resume from: forgotten at the next save
                return
            task.state, task.error = TaskState.FAILED, persisted.error
            self.manager.tasks[task.task_id] = task
            self.manager.failed.add(task.key)
        elif (
            persisted.state == TaskState.PAUSED or self.manager.settings.offline
        ):  # kept for online
            task.state = TaskState.PAUSED
            self.manager.tasks[task.task_id] = task
            self.manager.active[task.key] = task
        else:
            log.info("resuming %s@%s from the last run", task.model_id, task.version)
            self.start(task)


def _naming(message: str, task: TaskRuntime, required_by: str | None) -> str:
    """A task's error message that names its model (and the model that requires it),
    whatever layer wrote it."""
    what = f"{task.model_id}@{task.version}"
    if what not in message:
        message = f"{what}: {message}"
    if required_by and required_by not in message:
        message += f" ({what} is required by {required_by})"
    return message


def _domain_error(exc: BaseException) -> ModelManagerError | None:
    """The sidecar error behind ``exc``, looking inside task-group exception groups."""
    if isinstance(exc, ModelManagerError):
        return exc
    from sidecar.store.diskspace import as_disk_full

    if (disk_full := as_disk_full(exc)) is not None:
        return disk_full
    if (home := home_error(exc)) is not None:
        return home
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _domain_error(inner)) is not None:
                return found
    return None
