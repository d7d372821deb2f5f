"""Fetches one file of a task into its part: the part's own lock (taken over from a
stalled holder), the repositories' URLs, the bytes counted into the task's progress,
a plain URL's size checked against the quota once its server states it, and errors
that name the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio

from sidecar.core.tasks import TaskRuntime
from sidecar.core.url_quota import within_quota
from sidecar.core.wording import file_error, no_repository
from sidecar.errors import ModelManagerError
from sidecar.manifest import CatalogFile
from sidecar.store.diskspace import map_disk_full
from sidecar.store.locks import OwnedLock
from sidecar.transfer.fileio import detach
from sidecar.transfer.target import FileTarget, Pieces

if TYPE_CHECKING:
    from sidecar.core.runner import TaskRunner

LOCK_POLL = 0.25


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


def files_of(task: TaskRuntime) -> list[FileSpec]:
    if task.manifest is not None:
        return [
            FileSpec(f.path, f.size_bytes, f.sha256, _pieces_of(f)) for f in task.manifest.files
        ]
    assert task.url_source is not None  # a plain URL: size learned from the reply
    return [FileSpec(task.url_source.filename, None, task.url_source.sha256)]


async def fetch_file(
    runner: TaskRunner, task: TaskRuntime, file: FileSpec, part: Path, on_disk: dict[str, int]
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
        with map_disk_full(runner.layout.root):
            try:
                digest = await runner.transfer.fetch(
                    urls, target, progress, size_learned, task.note
                )
            except ModelManagerError as exc:
                raise file_error(exc, task.model_id, task.version, file.path) from exc
        if file.size is None and not sized.is_set():  # no Content-Length: what arrived
            size_learned(on_disk[file.path])
        return digest

    lock = OwnedLock(
        part.with_name(part.name + ".lock"), task.model_id, task.version,
        runner.settings.lock_timeout_ms,
    )  # fmt: skip
    try:
        # Another process's OS lock has no event to wait on: poll it.
        while not await anyio.to_thread.run_sync(lock.try_acquire):  # noqa: ASYNC110
            await anyio.sleep(LOCK_POLL)
        if lock.took_over:
            # The stalled holder may wake and write through its open descriptor:
            # give the part a new inode so those writes land in an orphan.
            await anyio.to_thread.run_sync(detach, part)
        urls = _urls(runner, task, file)
        if not urls:
            what = f"download {task.model_id}@{task.version}"
            raise no_repository(what, task.model_id, task.version)
        if file.size is not None:
            return await fetching(urls)
        return await within_quota(runner.make_room, task, fetching(urls), sized, part, progress)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lock.release)


def _urls(runner: TaskRunner, task: TaskRuntime, file: FileSpec) -> list[str]:
    if task.url_source is not None:
        return [task.url_source.url]
    quoted = "/".join(quote(segment, safe="") for segment in file.path.split("/"))
    return [
        f"{base}/storage/models/{quote(task.model_id)}/{quote(task.version)}/{quoted}"
        for base in runner.settings.repositories
    ]
