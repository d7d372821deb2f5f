"""The task methods (install, installUrl, pause, resume, cancel, getTask): what each
checks and which tasks it starts, stops or finds. A task's life once started is
``sidecar.core.lifecycle``'s; ``Manager`` offers these as its methods."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from sidecar.core.progress import version_bytes_on_disk
from sidecar.core.tasks import TaskRuntime, UrlSource
from sidecar.errors import InvalidState, TaskNotFound
from sidecar.manifest import check_safe_name
from sidecar.store.placement import remove_parts
from sidecar.wire import InstallResult, TaskState

if TYPE_CHECKING:
    from sidecar.core.manager import Manager
    from sidecar.manifest import CatalogModel


async def install(
    manager: Manager, model_id: str, version: str | None, dependencies: bool, repair: bool = False
) -> InstallResult:
    from sidecar.core.offline import install_offline
    from sidecar.core.requirements import resolve_requirements
    from sidecar.core.wording import version_not_found

    check_safe_name(model_id, "modelId")
    if manager.settings.offline:
        return install_offline(manager.registry, model_id, version)
    model = await manager.catalog.get_model(model_id, version)
    manifest = model.find_version(version)
    if manifest is None:
        raise version_not_found(model, version)
    chain = [(model, manifest.version)]
    if dependencies:
        chain += await resolve_requirements(
            manager.catalog, manager.settings, model, manifest.version
        )
    manager.keeper.check_damaged(chain, repair)
    await manager.keeper.make_room(chain)  # the quota: evict, or fail before downloading
    # What a resume keeps, looked at here: a look per task in _run (a thread hop each)
    # would let them reach the download slots in any order.
    on_disk = {
        (each.id, each_version): await anyio.to_thread.run_sync(
            version_bytes_on_disk, manager.layout, each.id, each_version
        )
        for each, each_version in chain
        if (each.id, each_version) not in manager.active
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
        started = _ensure_task(
            manager, each, each_version, after=None, repair=repair, recheck=repair and is_root
        )
        if started is not None and not started.on_disk_known:
            started.show_on_disk(on_disk.get(started.key, 0))
        if started is not None and not is_root:
            manager.required_by.setdefault(started.key, root)
        task = started if is_root else task
    if task is None:
        return InstallResult(
            task_id=None, model_id=model_id, version=manifest.version, state=TaskState.READY
        )
    return InstallResult(
        task_id=task.task_id, model_id=model_id, version=manifest.version, state=task.state
    )


def _ensure_task(
    manager: Manager,
    model: CatalogModel,
    version: str,
    after: TaskRuntime | None,
    repair: bool = False,
    recheck: bool = False,
) -> TaskRuntime | None:
    """The task for model@version: the existing one, a new one, or None if installed.
    No await inside, so concurrent installs cannot both create one."""
    key = (model.id, version)
    existing = manager.active.get(key)
    if existing is not None:
        return existing
    entry = manager.registry.installed(model.id, version)
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
    manager.lifecycle.start(task)
    return task


def get_task(manager: Manager, task_id: str) -> TaskRuntime:
    task = manager.tasks.get(task_id)
    if task is None:
        raise TaskNotFound(f"no task {task_id}", taskId=task_id)
    return task


def pause(manager: Manager, task_id: str) -> TaskRuntime:
    task = get_task(manager, task_id)
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


def resume(manager: Manager, task_id: str) -> TaskRuntime:
    task = get_task(manager, task_id)
    restartable = {TaskState.PAUSED, TaskState.FAILED}
    if task.state in restartable and task.scope is None and task.key not in manager.active:
        manager.lifecycle.start(task)
        task.state = TaskState.QUEUED
        return task
    if task.state == TaskState.PAUSED and task.scope is None:
        if manager.settings.offline:
            from sidecar.core.offline import offline_error

            raise offline_error(f"cannot resume {task.model_id}@{task.version}")
        manager.lifecycle.start(task)
        task.state = TaskState.QUEUED
        return task
    if task.state in {TaskState.QUEUED, TaskState.DOWNLOADING, TaskState.VERIFYING}:
        return task
    raise InvalidState(
        f"cannot resume {task.model_id}@{task.version}: its task is {task.state.value}",
        state=task.state.value, modelId=task.model_id, version=task.version,
    )  # fmt: skip


async def cancel(manager: Manager, task_id: str) -> TaskRuntime:
    task = get_task(manager, task_id)
    if task.state == TaskState.FAILED and task.raw_bytes and task.key not in manager.active:
        # A failed task kept for its partial data: cancelling frees that data.
        await anyio.to_thread.run_sync(remove_parts, manager.layout, task.model_id, task.version)
        task.raw_bytes = 0
        manager.failed.discard(task.key)
        await manager.lifecycle.set_state(task, TaskState.CANCELLED)
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
        await anyio.to_thread.run_sync(remove_parts, manager.layout, task.model_id, task.version)
        await manager.lifecycle.set_state(task, TaskState.CANCELLED)
    return task


async def install_url(
    manager: Manager, source: UrlSource, model_id: str, version: str
) -> InstallResult:
    key = (model_id, version)
    task = manager.active.get(key)
    entry = manager.registry.installed(model_id, version)
    if task is None and entry is not None and entry.state == "ready":
        return InstallResult(
            task_id=None, model_id=model_id, version=version, state=TaskState.READY
        )
    if manager.settings.offline:
        from sidecar.core.offline import offline_error

        raise offline_error(f"cannot download {source.filename}")
    if task is None:
        task = TaskRuntime(model_id=model_id, version=version, name=source.filename,
                           model_task=source.mode or "", url_source=source)  # fmt: skip
        task.files_total = 1
        manager.lifecycle.start(task)
    return InstallResult(task_id=task.task_id, model_id=model_id, version=version, state=task.state)
