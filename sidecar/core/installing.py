"""Installs one version under its task lock: what an earlier attempt left staged,
files identical to an installed version's reused, the free space checked, every file
fetched (``sidecar.core.filefetch``), then metadata, folder and registry written in
an order a crash between any two leaves repairable."""

from __future__ import annotations

import logging
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from sidecar.core.filefetch import FileSpec, fetch_file, files_of
from sidecar.core.progress import verified_part_bytes
from sidecar.core.repair import repair_candidates
from sidecar.core.tasks import TaskRuntime
from sidecar.errors import InsufficientDiskSpace
from sidecar.store.diskspace import free_bytes
from sidecar.store.locks import OwnedLock
from sidecar.store.placement import discard_parts, move_into_place, recover_staging
from sidecar.store.registry import write_metadata
from sidecar.transfer.hashing import sha256_file
from sidecar.wire import TaskState
from sidecar.wire_files import InstalledVersion, RegistryFile

if TYPE_CHECKING:
    from sidecar.core.runner import TaskRunner

log = logging.getLogger(__name__)

DISK_MARGIN = 16 * 1024 * 1024


class LockLost(Exception):
    """We stalled past our lock's timeout and another process broke it."""


async def install_locked(runner: TaskRunner, task: TaskRuntime, lock: OwnedLock) -> None:
    files = files_of(task)
    parts = {f.path: runner.layout.part(task.model_id, task.version, f.path) for f in files}
    await anyio.to_thread.run_sync(
        recover_staging, runner.layout, task.model_id, task.version, parts
    )
    reused = await _find_identical(runner, task, files)
    if reused:
        await anyio.to_thread.run_sync(discard_parts, [parts[p] for p in reused])
    # Bytes a resume keeps, not the parts' sizes: a segmented part is pre-sized.
    on_disk = await anyio.to_thread.run_sync(_verified_bytes, files, parts)
    await _check_disk_space(runner, [f for f in files if f.path not in reused], on_disk)
    task.files_total = len(files)
    task.files_done = 0
    task.bytes_total = sum(f.size or 0 for f in files)
    on_disk |= {f.path: f.size or 0 for f in files if f.path in reused}
    task.show_on_disk(sum(on_disk.values()))
    task.reset_speed()
    await runner.set_state(task, TaskState.DOWNLOADING)

    digests: dict[str, str] = {}
    limiter = anyio.CapacityLimiter(runner.settings.max_files_per_task)

    async def fetch(file: FileSpec) -> None:
        async with limiter:
            digests[file.path] = await fetch_file(runner, task, file, parts[file.path], on_disk)
            task.files_done += 1

    digests |= {f.path: f.sha256 or "" for f in files if f.path in reused}
    task.files_done = len(reused)
    async with anyio.create_task_group() as group:
        for file in files:
            if file.path not in reused:
                group.start_soon(fetch, file)

    await runner.set_state(task, TaskState.VERIFYING)
    entry = InstalledVersion(
        version=task.version,
        state="ready",
        installed_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        size_bytes=sum(on_disk.values()),
        checksum_sha256=task.manifest.checksum_sha256 if task.manifest else None,
        files=[
            RegistryFile(path=f.path, size_bytes=on_disk[f.path], sha256=digests[f.path])
            for f in files
        ],
        requires=[r.model_dump() for r in task.manifest.requires] if task.manifest else [],
        source=task.url_source.url if task.url_source else None,
        extra=_extra(task),
    )
    if not await anyio.to_thread.run_sync(lock.still_held):
        raise LockLost  # never move files another process now owns
    # Metadata first, then the folder, then the registry: a crash between any two is
    # repaired at start (the registry is reconciled from folders plus metadata).
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(
            write_metadata, runner.layout, task.model_id, task.name, task.model_task, entry
        )
        await anyio.to_thread.run_sync(
            move_into_place, runner.layout, task.model_id, task.version, parts, reused
        )
        await anyio.to_thread.run_sync(
            runner.registry.record, task.model_id, task.name, task.model_task, entry
        )


async def _find_identical(
    runner: TaskRunner, task: TaskRuntime, files: list[FileSpec]
) -> dict[str, Path]:
    """Files already installed in another version, by path: linked or copied into
    this version's staging folder at the end instead of fetched. Only a file whose
    size and SHA-256 on disk both agree with this manifest qualifies."""
    known = _installed_files_by_hash(runner, exclude=task.key)
    entry = runner.registry.installed(task.model_id, task.version)
    if task.repair and entry is not None:
        # Other versions' good copies first: this one's may be the wrong ones.
        known = {**repair_candidates(runner.layout, task.model_id, entry), **known}
    reused: dict[str, Path] = {}
    for file in files:
        candidate = known.get(file.sha256) if file.sha256 else None
        if candidate is None or file.size is None or candidate[1] != file.size:
            continue
        source = candidate[0]
        try:
            if await anyio.to_thread.run_sync(_digest_if_size, source, file.size) != file.sha256:
                continue
        except OSError as exc:
            log.warning("cannot reuse %s: %s", source, exc)
            continue
        reused[file.path] = source
        log.info("reusing %s for %s@%s", source, task.model_id, task.version)
    return reused


def _installed_files_by_hash(
    runner: TaskRunner, exclude: tuple[str, str]
) -> dict[str, tuple[Path, int]]:
    found: dict[str, tuple[Path, int]] = {}
    for model_id, model in runner.registry.document.models.items():
        for version, entry in model.versions.items():
            if (model_id, version) == exclude or entry.state != "ready":
                continue
            folder = runner.layout.model_dir(model_id, version)
            for file in entry.files:
                path = folder.joinpath(*file.path.split("/"))
                found.setdefault(file.sha256, (path, file.size_bytes))
    return found


async def _check_disk_space(
    runner: TaskRunner, files: list[FileSpec], sizes: dict[str, int]
) -> None:
    needed = sum(max(0, (f.size or 0) - sizes[f.path]) for f in files)
    free = await anyio.to_thread.run_sync(free_bytes, runner.layout.temp)
    if needed + DISK_MARGIN > free:
        raise InsufficientDiskSpace(
            f"{needed} bytes still to download, {free} free under {runner.layout.root}",
            reason="no_space",
            neededBytes=needed,
            freeBytes=free,
        )


def _verified_bytes(files: list[FileSpec], parts: dict[str, Path]) -> dict[str, int]:
    return {f.path: verified_part_bytes(parts[f.path], f.size) for f in files}


def _digest_if_size(path: Path, size: int) -> str | None:
    """The SHA-256 of a regular file of exactly ``size`` bytes, else None (blocking)."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode) or info.st_size != size:
        return None
    return sha256_file(path)


def _extra(task: TaskRuntime) -> dict[str, object]:
    extra: dict[str, object] = dict(task.manifest.extra) if task.manifest else {}
    if task.url_source is not None:
        extra.update({"url": task.url_source.url, "mode": task.url_source.mode})
    return extra
