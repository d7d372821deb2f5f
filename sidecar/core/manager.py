"""The model library's state machine: tasks, their states and notifications, and the
answers to every method. Runs as a service in the app's task group."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from sidecar.core.eviction import StoreKeeper
from sidecar.core.hooks import DownloadHooks, NoHooks, Notify
from sidecar.core.later import build_install_models, import_the_rest
from sidecar.core.library import Library
from sidecar.core.progress import version_bytes_on_disk
from sidecar.core.tasks import TaskRuntime, TaskStore, UrlSource
from sidecar.errors import (
    InvalidState,
    ModelManagerError,
    TaskNotFound,
)
from sidecar.manifest import check_safe_name
from sidecar.store.fsutil import sweep_temp_files
from sidecar.store.homefs import home_error
from sidecar.store.layout import HomeLayout
from sidecar.store.locks import clean_stale_lock_files
from sidecar.store.placement import remove_legacy_parts, remove_parts
from sidecar.store.registry import Registry
from sidecar.wire import (
    InstallResult,
    ModelsChanged,
    ModelState,
    PersistedTask,
    TaskError,
    TaskState,
)

if TYPE_CHECKING:  # imported when first used: the first answer needs none of them
    from sidecar.config import Settings
    from sidecar.core.catalog import Catalog
    from sidecar.core.ranking import RankingSource
    from sidecar.core.relocation import Ownership
    from sidecar.core.runner import TaskRunner
    from sidecar.manifest import CatalogModel
    from sidecar.transfer.client import TransferClient
    from sidecar.transfer.http import JsonClient
    from sidecar.transfer.network import Network

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.1  # at most ~10 progress notifications a second per task
COMPLETE_AFTER = 1.0  # the rest of the start-up, when no answer or method asked for it sooner
REGISTRY_POLL = 1.0
MODEL_STATE_OF: dict[TaskState, ModelState] = {
    TaskState.QUEUED: "queued",
    TaskState.PAUSED: "paused",
    TaskState.READY: "ready",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "not_installed",
}
ACTIVE = {TaskState.QUEUED, TaskState.DOWNLOADING, TaskState.VERIFYING, TaskState.PAUSED}


class Manager:
    def __init__(
        self,
        settings: Settings,
        client: JsonClient,
        network: Network,
        transfer: TransferClient,
        notify: Notify,
        hooks: DownloadHooks | None = None,
    ) -> None:
        self.settings = settings
        self.network = network
        self.transfer = transfer
        self.client = client
        self.layout = HomeLayout(settings.home)
        self.registry = Registry(self.layout)
        self.store = TaskStore(self.layout)
        self.notify = notify
        self.hooks: DownloadHooks = hooks or NoHooks()
        self._own_hooks = hooks is None  # those of installed packages, read in `complete`
        # Set once `complete` has run: after the first answer (getModelPath needs only
        # the registry, the tasks and last-used), or when a method needs the rest.
        self.ready = anyio.Event()
        self._wanted = anyio.Event()
        self.tasks: dict[str, TaskRuntime] = {}
        self.active: dict[tuple[str, str], TaskRuntime] = {}  # unfinished, by (model, version)
        self.failed: set[tuple[str, str]] = set()
        # (model, version) of a requirement → the model@version whose install asked for it.
        self.required_by: dict[tuple[str, str], str] = {}
        self.library = Library(
            settings, self.layout, self.registry, lambda: self.catalog, notify, self.active,
            self.failed,
        )  # fmt: skip
        self.keeper = StoreKeeper(self)  # disk usage, pins, leases, quota, last used
        self._group: TaskGroup | None = None
        self.moving = False  # moveStore at work (sidecar.core.relocation): no task starts
        self.ownership: Ownership | None = None  # the home's lock and endpoint, if ours

    # The parts the first answer does not need, made when first used (after `ready`).

    @cached_property
    def catalog(self) -> Catalog:
        from sidecar.core.catalog import Catalog

        return Catalog(self.settings, self.layout, self.client)

    @cached_property
    def ranking(self) -> RankingSource:
        from sidecar.core.ranking import RankingSource

        return RankingSource(self.settings, self.layout, self.client)

    @cached_property
    def runner(self) -> TaskRunner:
        from sidecar.core.runner import TaskRunner

        return TaskRunner(
            self.settings, self.layout, self.registry, self.transfer, self.set_state,
            self.keeper.make_room_for,
        )  # fmt: skip

    # --- service -------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Started once getModelPath can answer; the rest (`complete`) follows."""
        await anyio.to_thread.run_sync(self._prepare_home)
        async with anyio.create_task_group() as group:
            self._group = group
            for persisted, on_disk in await anyio.to_thread.run_sync(self._load_tasks):
                self._resume_persisted(persisted, on_disk)
            group.start_soon(self._progress_ticker)
            group.start_soon(self._watch_registry)
            group.start_soon(self.keeper.last_used.serve)
            task_status.started()
            with anyio.move_on_after(COMPLETE_AFTER):
                await self._wanted.wait()
            await self.complete()

    def complete_soon(self) -> None:
        """The first answer is out (or a method waits): load the rest now."""
        self._wanted.set()

    async def until_ready(self) -> None:
        self._wanted.set()
        await self.ready.wait()

    async def complete(self) -> None:
        """What the methods other than getModelPath need: their modules and
        jsonrpcserver's top level (imported in a thread: the loop keeps answering), the
        catalog's cache, the installed hooks (reading package metadata takes tens of
        milliseconds)."""
        await anyio.to_thread.run_sync(import_the_rest)
        await self.catalog.load_cache()
        if self._own_hooks:
            from sidecar.core.hooks import installed_hooks

            self.hooks = await anyio.to_thread.run_sync(installed_hooks)
        self.ready.set()
        # The first install of the session then starts at once.
        await anyio.to_thread.run_sync(build_install_models)
        try:
            await self.client.warm_up()
        except Exception as exc:  # that call will say what is wrong
            log.debug("the JSON client is made at its first call: %s", exc)

    def _load_tasks(self) -> list[tuple[PersistedTask, int]]:
        """Saved tasks with the verified bytes of their parts (blocking)."""
        return [
            (t, version_bytes_on_disk(self.layout, t.model_id, t.version))
            for t in self.store.load()
        ]

    def _prepare_home(self) -> None:
        self.layout.create()
        # Never inside models/: a model may ship files of any name.
        leftovers = [
            *sweep_temp_files(self.layout.root, ".*.tmp"),
            *sweep_temp_files(self.layout.metadata, ".*.tmp", recursive=True),
            *sweep_temp_files(self.layout.cache, ".*.tmp"),
            *sweep_temp_files(self.layout.temp, "*.tmp"),
        ]
        for path in leftovers:
            log.info("removed a temp file a kill left behind: %s", path)
        for path in remove_legacy_parts(self.layout):
            log.info("removed a part named by an older version: %s", path.name)
        for folder in (self.layout.task_locks, self.layout.temp):
            for path in clean_stale_lock_files(folder):
                log.info("removed stale lock %s", path.name)
        self.registry.load()
        self.library.check_sizes()

    async def _watch_registry(self) -> None:
        while True:
            await anyio.sleep(REGISTRY_POLL)
            if self.moving:  # its file moves: reading it now would rebuild it empty
                continue
            try:
                await anyio.to_thread.run_sync(self.registry.reload_if_changed)
            except OSError as exc:
                log.warning("cannot reload registry: %s", exc)

    async def _progress_ticker(self) -> None:
        last_sent: dict[str, int] = {}
        while True:
            await anyio.sleep(PROGRESS_INTERVAL)
            for task in list(self.active.values()):
                if task.state != TaskState.DOWNLOADING:
                    continue
                task.sample_speed()
                if last_sent.get(task.task_id) != task.shown_bytes:
                    last_sent[task.task_id] = task.shown_bytes
                    snapshot = task.snapshot()
                    self.hooks.on_download_progress(snapshot)
                    await self.notify("task.progress", snapshot.wire())

    # --- state ---------------------------------------------------------------------

    async def set_state(self, task: TaskRuntime, state: TaskState) -> None:
        previous, task.state = task.state, state
        if state in ACTIVE:
            self.active[task.key] = task
            await self._persist(self.store.save, task.persisted())
        else:
            if self.active.get(task.key) is task:
                del self.active[task.key]
            with anyio.CancelScope(shield=True):
                if state == TaskState.FAILED and task.raw_bytes > 0 and not task.url_source:
                    # Remembered with its partial data: `tasks` shows it after a restart,
                    # `resume` continues it, `cancel` frees the disk. (Not a plain URL's:
                    # its URL may hold a secret, kept on disk only while a task runs.)
                    await self._persist(self.store.save, task.persisted())
                else:
                    await self._persist(self.store.drop, task.model_id, task.version)
            task.finished.set()
            await self.notify("task.progress", task.snapshot().wire())
        snapshot = task.snapshot()
        await self.notify("task.state", snapshot.wire())
        if state == TaskState.DOWNLOADING:
            self.hooks.on_download_start(snapshot)
        model_state = MODEL_STATE_OF.get(state)
        if model_state is not None and state != previous:
            changed = ModelsChanged(model_id=task.model_id, version=task.version, state=model_state)
            await self.notify("models.changed", changed.wire())

    async def _persist(self, write: Callable[..., None], *args: Any) -> None:
        """tasks.json only helps a restart resume: a full disk must not fail the task
        (or its failure) here; the download reports the full disk itself."""
        try:
            await anyio.to_thread.run_sync(write, *args)
        except OSError as exc:
            log.warning("cannot save tasks.json: %s", exc)

    def _start(self, task: TaskRuntime) -> None:
        assert self._group is not None, "manager is not serving"
        if self.moving:
            raise InvalidState(
                "the model home is being moved: try again once moveStore has answered",
                reason="move_in_progress",
            )
        self.tasks[task.task_id] = task
        self.active[task.key] = task
        self.failed.discard(task.key)
        task.finished = anyio.Event()
        task.stop_request = None
        task.error = None
        self.runner.line.join(task)
        self._group.start_soon(self._run, task)

    async def _run(self, task: TaskRuntime) -> None:
        with anyio.CancelScope() as scope:
            task.scope = scope
            try:
                await self.until_ready()  # the hooks, the catalog
                if not task.on_disk_known:  # the first notification shows what is on disk
                    task.show_on_disk(
                        await anyio.to_thread.run_sync(
                            version_bytes_on_disk, self.layout, task.model_id, task.version
                        )
                    )
                await self.set_state(task, TaskState.QUEUED)
                if task.manifest is None and task.url_source is None:
                    await self._resolve_manifest(task)
                await self.keeper.make_room_for(task)  # the quota, for a resumed task too
                await self.runner.run(task)
            except Exception as exc:
                error = _domain_error(exc)
                if error is not None:
                    message = _naming(error.message, task, self.required_by.get(task.key))
                    await self._fail(task, error.name, message)
                else:  # a bug must fail one task, never the daemon
                    log.exception("task %s crashed", task.task_id)
                    await self._fail(task, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
                task.scope = None  # nothing runs: `resume` may start it again
                return
            finally:  # failed, paused or cancelled before its turn: the next one goes
                self.runner.line.leave(task)
            task.waiting_for = None
            snapshot = task.snapshot()
            await self.set_state(task, TaskState.READY)
            self.required_by.pop(task.key, None)
            self.hooks.on_download_complete(snapshot)
            return
        task.scope = None
        if task.stop_request == TaskState.CANCELLED:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    remove_parts, self.layout, task.model_id, task.version
                )
                task.waiting_for = None
                await self.set_state(task, TaskState.CANCELLED)
        elif task.stop_request == TaskState.PAUSED:
            with anyio.CancelScope(shield=True):
                task.waiting_for = None
                task.reset_speed()
                await self.set_state(task, TaskState.PAUSED)

    async def _fail(self, task: TaskRuntime, code: str, message: str) -> None:
        log.error(
            "task %s (%s@%s) failed: %s %s",
            task.task_id,
            task.model_id,
            task.version,
            code,
            message,
        )
        task.error = TaskError(code=code, message=message)
        task.waiting_for = None
        self.failed.add(task.key)
        self.hooks.on_download_error(task.snapshot(), task.error)
        with anyio.CancelScope(shield=True):
            await self.set_state(task, TaskState.FAILED)

    async def _resolve_manifest(self, task: TaskRuntime) -> None:
        from sidecar.core.wording import version_not_found

        model = await self.catalog.get_model(task.model_id, task.version)
        version = model.find_version(task.version)
        if version is None:
            raise version_not_found(model, task.version)
        task.manifest = version
        task.name, task.model_task = model.name, model.task

    def _resume_persisted(self, persisted: PersistedTask, on_disk: int) -> None:
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
            self.tasks[task.task_id] = task
            self.failed.add(task.key)
        elif persisted.state == TaskState.PAUSED or self.settings.offline:  # kept for online
            task.state = TaskState.PAUSED
            self.tasks[task.task_id] = task
            self.active[task.key] = task
        else:
            log.info("resuming %s@%s from the last run", task.model_id, task.version)
            self._start(task)

    # --- API -----------------------------------------------------------------------

    async def install(
        self, model_id: str, version: str | None, dependencies: bool, repair: bool = False
    ) -> InstallResult:
        from sidecar.core.offline import install_offline
        from sidecar.core.requirements import resolve_requirements
        from sidecar.core.wording import version_not_found

        check_safe_name(model_id, "modelId")
        if self.settings.offline:
            return install_offline(self.registry, model_id, version)
        model = await self.catalog.get_model(model_id, version)
        manifest = model.find_version(version)
        if manifest is None:
            raise version_not_found(model, version)
        chain = [(model, manifest.version)]
        if dependencies:
            chain += await resolve_requirements(
                self.catalog, self.settings, model, manifest.version
            )
        self.keeper.check_damaged(chain, repair)
        await self.keeper.make_room(chain)  # the quota: evict, or fail before downloading
        # What a resume keeps, looked at here: a look per task in _run (a thread hop each)
        # would let them reach the download slots in any order.
        on_disk = {
            (each.id, each_version): await anyio.to_thread.run_sync(
                version_bytes_on_disk, self.layout, each.id, each_version
            )
            for each, each_version in chain
            if (each.id, each_version) not in self.active
        }
        # Everything is resolved: from here on no await, so the tasks start together
        # (or, when a requirement is missing above, none does). Requirements first, the
        # deepest first: they take download slots before the model that needs them,
        # never queued behind it, and run alongside it when slots allow.
        task = None
        root = f"{model.id}@{manifest.version}"
        for each, each_version in [*reversed(chain[1:]), chain[0]]:
            is_root = (each.id, each_version) == (model.id, manifest.version)
            # repair: the requested version is re-hashed even if not known damaged;
            # its requirements only when verify found them damaged.
            started = self._ensure_task(
                each, each_version, after=None, repair=repair, recheck=repair and is_root
            )
            if started is not None and not started.on_disk_known:
                started.show_on_disk(on_disk.get(started.key, 0))
            if started is not None and not is_root:
                self.required_by.setdefault(started.key, root)
            task = started if is_root else task
        if task is None:
            return InstallResult(
                task_id=None, model_id=model_id, version=manifest.version, state=TaskState.READY
            )
        return InstallResult(
            task_id=task.task_id, model_id=model_id, version=manifest.version, state=task.state
        )

    def _ensure_task(
        self,
        model: CatalogModel,
        version: str,
        after: TaskRuntime | None,
        repair: bool = False,
        recheck: bool = False,
    ) -> TaskRuntime | None:
        """The task for model@version: the existing one, a new one, or None if installed.
        No await inside, so concurrent installs cannot both create one."""
        key = (model.id, version)
        existing = self.active.get(key)
        if existing is not None:
            return existing
        entry = self.registry.installed(model.id, version)
        if entry is not None and entry.state == "ready" and not recheck:
            return None
        task = TaskRuntime(
            model_id=model.id, version=version, name=model.name, model_task=model.task,
            manifest=model.find_version(version), after=after,
        )  # fmt: skip
        task.repair = repair and entry is not None
        manifest = task.manifest
        assert manifest is not None
        task.bytes_total = sum(f.size_bytes for f in manifest.files)
        task.files_total = len(manifest.files)
        self._start(task)
        return task

    def get_task(self, task_id: str) -> TaskRuntime:
        task = self.tasks.get(task_id)
        if task is None:
            raise TaskNotFound(f"no task {task_id}", taskId=task_id)
        return task

    def pause(self, task_id: str) -> TaskRuntime:
        task = self.get_task(task_id)
        if task.state in {TaskState.QUEUED, TaskState.DOWNLOADING}:
            task.stop_request = TaskState.PAUSED
            if task.scope is not None:
                task.scope.cancel()
            return task
        if task.state == TaskState.PAUSED:
            return task
        raise InvalidState(
            f"cannot pause {task.model_id}@{task.version}: its task is {task.state.value}",
            state=task.state.value, modelId=task.model_id, version=task.version,
        )  # fmt: skip

    def resume(self, task_id: str) -> TaskRuntime:
        task = self.get_task(task_id)
        restartable = {TaskState.PAUSED, TaskState.FAILED}
        if task.state in restartable and task.scope is None and task.key not in self.active:
            self._start(task)
            task.state = TaskState.QUEUED
            return task
        if task.state == TaskState.PAUSED and task.scope is None:
            if self.settings.offline:
                from sidecar.core.offline import offline_error

                raise offline_error(f"cannot resume {task.model_id}@{task.version}")
            self._start(task)
            task.state = TaskState.QUEUED
            return task
        if task.state in {TaskState.QUEUED, TaskState.DOWNLOADING, TaskState.VERIFYING}:
            return task
        raise InvalidState(
            f"cannot resume {task.model_id}@{task.version}: its task is {task.state.value}",
            state=task.state.value, modelId=task.model_id, version=task.version,
        )  # fmt: skip

    async def cancel(self, task_id: str) -> TaskRuntime:
        task = self.get_task(task_id)
        if task.state == TaskState.FAILED and task.raw_bytes and task.key not in self.active:
            # A failed task kept for its partial data: cancelling frees that data.
            await anyio.to_thread.run_sync(remove_parts, self.layout, task.model_id, task.version)
            task.raw_bytes = 0
            self.failed.discard(task.key)
            await self.set_state(task, TaskState.CANCELLED)
            return task
        if task.state.finished:
            raise InvalidState(
                f"cannot cancel {task.model_id}@{task.version}: its task is already "
                f"{task.state.value}",
                state=task.state.value, modelId=task.model_id, version=task.version,
            )  # fmt: skip
        task.stop_request = TaskState.CANCELLED
        if task.scope is not None:
            task.scope.cancel()
            await task.finished.wait()
        else:  # paused: nothing is running
            await anyio.to_thread.run_sync(remove_parts, self.layout, task.model_id, task.version)
            await self.set_state(task, TaskState.CANCELLED)
        return task

    async def install_url(self, source: UrlSource, model_id: str, version: str) -> InstallResult:
        key = (model_id, version)
        task = self.active.get(key)
        entry = self.registry.installed(model_id, version)
        if task is None and entry is not None and entry.state == "ready":
            return InstallResult(
                task_id=None, model_id=model_id, version=version, state=TaskState.READY
            )
        if self.settings.offline:
            from sidecar.core.offline import offline_error

            raise offline_error(f"cannot download {source.filename}")
        if task is None:
            task = TaskRuntime(model_id=model_id, version=version, name=source.filename,
                               model_task=source.mode or "", url_source=source)  # fmt: skip
            task.files_total = 1
            self._start(task)
        return InstallResult(
            task_id=task.task_id, model_id=model_id, version=version, state=task.state
        )


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
