"""Runs one task: wait its turn, take the cross-process task lock, fetch every file,
verify, and move the version into ``models/``. Data flows one way: manager → runner →
download/fetch → install → registry."""

from __future__ import annotations

import logging
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import anyio

from sidecar.config import Settings
from sidecar.core.progress import verified_part_bytes
from sidecar.core.repair import repair_candidates
from sidecar.core.tasks import TaskRuntime
from sidecar.core.url_quota import MakeRoom, within_quota
from sidecar.core.wording import file_error, no_repository
from sidecar.errors import InsufficientDiskSpace, InvalidState, ModelManagerError
from sidecar.manifest import CatalogFile
from sidecar.store.diskspace import free_bytes, map_disk_full
from sidecar.store.layout import HomeLayout
from sidecar.store.locks import OwnedLock
from sidecar.store.placement import discard_parts, move_into_place, recover_staging
from sidecar.store.registry import Registry, write_metadata
from sidecar.transfer.client import TransferClient
from sidecar.transfer.fileio import detach
from sidecar.transfer.hashing import sha256_file
from sidecar.transfer.target import FileTarget, Pieces
from sidecar.wire import (
    InstalledVersion,
    LimitsResult,
    RegistryFile,
    SetLimitsParams,
    TaskState,
)

log = logging.getLogger(__name__)

DISK_MARGIN = 16 * 1024 * 1024
TAKEOVER_ROUNDS = 3
LOCK_POLL = 0.25

SetState = Callable[[TaskRuntime, TaskState], Awaitable[None]]


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch; size and hash are None for a plain URL that did not say."""

    path: str
    size: int | None
    sha256: str | None
    pieces: Pieces | None = None


def _pieces_of(file: CatalogFile) -> Pieces | None:
    if file.piece_size_bytes is None or file.piece_sha256 is None:
        return None
    return Pieces(file.piece_size_bytes, tuple(file.piece_sha256))


class LockLost(Exception):
    """We stalled past our lock's timeout and another process broke it."""


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
        make_room: MakeRoom | None = None,
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
                        await self._install_locked(task, lock)
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

    def _files(self, task: TaskRuntime) -> list[FileSpec]:
        if task.manifest is not None:
            return [
                FileSpec(f.path, f.size_bytes, f.sha256, _pieces_of(f)) for f in task.manifest.files
            ]
        assert task.url_source is not None  # a plain URL: size learned from the reply
        return [FileSpec(task.url_source.filename, None, task.url_source.sha256)]

    async def _install_locked(self, task: TaskRuntime, lock: OwnedLock) -> None:
        files = self._files(task)
        parts = {f.path: self.layout.part(task.model_id, task.version, f.path) for f in files}
        await anyio.to_thread.run_sync(
            recover_staging, self.layout, task.model_id, task.version, parts
        )
        reused = await self._find_identical(task, files)
        if reused:
            await anyio.to_thread.run_sync(discard_parts, [parts[p] for p in reused])
        # Bytes a resume keeps, not the parts' sizes: a segmented part is pre-sized.
        on_disk = await anyio.to_thread.run_sync(_verified_bytes, files, parts)
        await self._check_disk_space([f for f in files if f.path not in reused], on_disk)
        task.files_total = len(files)
        task.files_done = 0
        task.bytes_total = sum(f.size or 0 for f in files)
        on_disk |= {f.path: f.size or 0 for f in files if f.path in reused}
        task.show_on_disk(sum(on_disk.values()))
        task.reset_speed()
        await self.set_state(task, TaskState.DOWNLOADING)

        digests: dict[str, str] = {}
        limiter = anyio.CapacityLimiter(self.settings.max_files_per_task)

        async def fetch(file: FileSpec) -> None:
            async with limiter:
                digests[file.path] = await self._fetch_file(task, file, parts[file.path], on_disk)
                task.files_done += 1

        digests |= {f.path: f.sha256 or "" for f in files if f.path in reused}
        task.files_done = len(reused)
        async with anyio.create_task_group() as group:
            for file in files:
                if file.path not in reused:
                    group.start_soon(fetch, file)

        await self.set_state(task, TaskState.VERIFYING)
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
                write_metadata, self.layout, task.model_id, task.name, task.model_task, entry
            )
            await anyio.to_thread.run_sync(
                move_into_place, self.layout, task.model_id, task.version, parts, reused
            )
            await anyio.to_thread.run_sync(
                self.registry.record, task.model_id, task.name, task.model_task, entry
            )

    async def _fetch_file(
        self, task: TaskRuntime, file: FileSpec, part: Path, on_disk: dict[str, int]
    ) -> str:
        target = FileTarget(
            part=part,
            expected_size=file.size,
            sha256=file.sha256,
            pieces=file.pieces,
            label=f"{task.model_id}@{task.version} {file.path}",
        )

        def progress(size: int) -> None:
            task.add_bytes(size - on_disk[file.path])
            on_disk[file.path] = size

        learned = 0  # a plain URL's size, once its server states it
        sized = anyio.Event()

        def size_learned(size: int) -> None:
            nonlocal learned
            task.bytes_total += size - learned
            learned = size
            sized.set()

        async def fetching(urls: list[str]) -> str:
            with map_disk_full(self.layout.root):
                try:
                    digest = await self.transfer.fetch(
                        urls, target, progress, size_learned, task.note
                    )
                except ModelManagerError as exc:
                    raise file_error(exc, task.model_id, task.version, file.path) from exc
            if file.size is None and not sized.is_set():  # no Content-Length: what arrived
                size_learned(on_disk[file.path])
            return digest

        lock = OwnedLock(
            part.with_name(part.name + ".lock"), task.model_id, task.version,
            self.settings.lock_timeout_ms,
        )  # fmt: skip
        try:
            # Another process's OS lock has no event to wait on: poll it.
            while not await anyio.to_thread.run_sync(lock.try_acquire):  # noqa: ASYNC110
                await anyio.sleep(LOCK_POLL)
            if lock.took_over:
                # The stalled holder may wake and write through its open descriptor:
                # give the part a new inode so those writes land in an orphan.
                await anyio.to_thread.run_sync(detach, part)
            urls = self._urls(task, file)
            if not urls:
                what = f"download {task.model_id}@{task.version}"
                raise no_repository(what, task.model_id, task.version)
            if file.size is not None or self.make_room is None:
                return await fetching(urls)
            return await within_quota(self.make_room, task, fetching(urls), sized, part, progress)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lock.release)

    def _urls(self, task: TaskRuntime, file: FileSpec) -> list[str]:
        if task.url_source is not None:
            return [task.url_source.url]
        quoted = "/".join(quote(segment, safe="") for segment in file.path.split("/"))
        return [
            f"{base}/storage/models/{quote(task.model_id)}/{quote(task.version)}/{quoted}"
            for base in self.settings.repositories
        ]

    async def _find_identical(self, task: TaskRuntime, files: list[FileSpec]) -> dict[str, Path]:
        """Files already installed in another version, by path: linked or copied into
        this version's staging folder at the end instead of fetched. Only a file whose
        size and SHA-256 on disk both agree with this manifest qualifies."""
        known = self._installed_files_by_hash(exclude=task.key)
        entry = self.registry.installed(task.model_id, task.version)
        if task.repair and entry is not None:
            # Other versions' good copies first: this one's may be the wrong ones.
            known = {**repair_candidates(self.layout, task.model_id, entry), **known}
        reused: dict[str, Path] = {}
        for file in files:
            candidate = known.get(file.sha256) if file.sha256 else None
            if candidate is None or file.size is None or candidate[1] != file.size:
                continue
            source = candidate[0]
            try:
                if await anyio.to_thread.run_sync(_digest_if_size, source, file.size) != (
                    file.sha256
                ):
                    continue
            except OSError as exc:
                log.warning("cannot reuse %s: %s", source, exc)
                continue
            reused[file.path] = source
            log.info("reusing %s for %s@%s", source, task.model_id, task.version)
        return reused

    def _installed_files_by_hash(self, exclude: tuple[str, str]) -> dict[str, tuple[Path, int]]:
        found: dict[str, tuple[Path, int]] = {}
        for model_id, model in self.registry.document.models.items():
            for version, entry in model.versions.items():
                if (model_id, version) == exclude or entry.state != "ready":
                    continue
                folder = self.layout.model_dir(model_id, version)
                for file in entry.files:
                    path = folder.joinpath(*file.path.split("/"))
                    found.setdefault(file.sha256, (path, file.size_bytes))
        return found

    async def _check_disk_space(self, files: list[FileSpec], sizes: dict[str, int]) -> None:
        needed = sum(max(0, (f.size or 0) - sizes[f.path]) for f in files)
        free = await anyio.to_thread.run_sync(free_bytes, self.layout.temp)
        if needed + DISK_MARGIN > free:
            raise InsufficientDiskSpace(
                f"{needed} bytes still to download, {free} free under {self.layout.root}",
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


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_caused_by(inner, kind) for inner in exc.exceptions)
    return False
