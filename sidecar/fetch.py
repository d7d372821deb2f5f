"""Fetch one file into its ``.part``: resume by Range + If-Range, hash as bytes arrive.

Only a 206 whose Content-Range starts exactly where the part ends is appended;
anything else starts the part over, so two versions of a file never mix. The
part's record (``.part.json``) says which URL and validator its bytes came from.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from sidecar.errors import ChecksumMismatch
from sidecar.fileio import PartHandle
from sidecar.fsutil import atomic_write_bytes
from sidecar.hashing import hash_into
from sidecar.http import (
    ServerRefused,
    SourceFailed,
    TransientError,
    map_transport_errors,
    raise_for_status,
)
from sidecar.ratelimit import RateLimiter
from sidecar.wire import PartRecord

log = logging.getLogger(__name__)

WRITE_BATCH = 1024 * 1024  # bytes handed to the worker threads per write+hash
BATCH_AGE = 0.25  # ...or fewer, once they waited this long: a slow line still shows progress
SYNC_EVERY = 64 * 1024 * 1024
PIPELINE_DEPTH = 4  # batches received ahead of the disk: memory stays flat (~5 MiB a file)
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

# Called with how many bytes of the file are on disk now (it drops when a part restarts).
Progress = Callable[[int], None]
# Called with the file's full size when a manifest did not give it and the server does.
SizeLearned = Callable[[int], None]


@dataclass(frozen=True)
class FileTarget:
    part: Path
    expected_size: int | None
    sha256: str | None

    @property
    def record_path(self) -> Path:
        return self.part.with_name(self.part.name + ".json")


def read_record(target: FileTarget) -> PartRecord | None:
    try:
        return PartRecord.model_validate_json(target.record_path.read_bytes())
    except (OSError, ValueError):
        return None


def discard_part(target: FileTarget) -> None:
    target.part.unlink(missing_ok=True)
    target.record_path.unlink(missing_ok=True)


class _PartWriter:
    """The part, appended to in order, and its running hash."""

    def __init__(self, target: FileTarget) -> None:
        self.target = target
        self.part = PartHandle(target.part)
        self.hasher = hashlib.sha256()
        self.size = 0
        self.synced = 0

    def open_for_resume(self) -> int:
        """Blocking: open the part and hash what it holds (a resume re-hashes it once)."""
        self.part.open()
        self.hasher = hashlib.sha256()
        self.size = hash_into(self.hasher, self.target.part)
        self.part.truncate(self.size)
        self.synced = self.size
        return self.size

    def restart(self) -> None:
        self.part.truncate(0)
        self.hasher = hashlib.sha256()
        self.size = self.synced = 0

    async def write(self, chunks: list[bytes]) -> None:
        """Write and hash in two worker threads at once (both release the GIL); every
        ``SYNC_EVERY`` bytes a third flushes what is written so far, so the disk keeps
        up behind the download instead of all of it being flushed at the end."""
        async with anyio.create_task_group() as group:
            if self.size - self.synced >= SYNC_EVERY:
                self.synced = self.size
                group.start_soon(anyio.to_thread.run_sync, self.part.sync)
            group.start_soon(anyio.to_thread.run_sync, self.part.write_at, chunks, self.size)
            group.start_soon(anyio.to_thread.run_sync, _hash_chunks, self.hasher, chunks)
        self.size += sum(len(c) for c in chunks)


def _hash_chunks(hasher: hashlib._Hash, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)


def _save_record(target: FileTarget, url: str, response: httpx.Response) -> None:
    record = PartRecord(
        url=url,
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        expected_size=target.expected_size,
        sha256=target.sha256,
    )
    atomic_write_bytes(target.record_path, record.model_dump_json(by_alias=True).encode())


def validator_of(record: PartRecord) -> str | None:
    """What If-Range may carry: a strong ETag, else Last-Modified."""
    strong_etag = record.etag if record.etag and not record.etag.startswith("W/") else None
    return strong_etag or record.last_modified


def _resume_headers(record: PartRecord | None, url: str, offset: int) -> dict[str, str]:
    headers = {"Accept-Encoding": "identity"}
    if offset <= 0:
        return headers
    headers["Range"] = f"bytes={offset}-"
    if record is not None and record.url == url and (validator := validator_of(record)):
        headers["If-Range"] = validator
    return headers


def _continues_at(response: httpx.Response, offset: int) -> bool:
    match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    return match is not None and int(match.group(1)) == offset and encoding == "identity"


async def fetch_once(
    client: httpx.AsyncClient,
    url: str,
    target: FileTarget,
    headers: dict[str, str],
    progress: Progress,
    rate: RateLimiter,
    size_learned: SizeLearned | None = None,
) -> str:
    """One attempt from one URL over one connection. Returns the part's SHA-256."""
    writer = _PartWriter(target)
    await anyio.to_thread.run_sync(_keep_prefix_of_segmented_part, target)
    try:
        offset = await anyio.to_thread.run_sync(writer.open_for_resume)
        if target.expected_size is not None and offset > target.expected_size:
            await anyio.to_thread.run_sync(writer.restart)
            offset = 0
        progress(offset)
        if target.expected_size is None or offset < target.expected_size:
            record = await anyio.to_thread.run_sync(read_record, target)
            request_headers = headers | _resume_headers(record, url, offset)
            await _stream_into(
                client, url, target, request_headers, writer, progress, rate, size_learned
            )
        await anyio.to_thread.run_sync(writer.part.sync)
        return _check_complete(target, writer)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(writer.part.close)


async def _stream_into(
    client: httpx.AsyncClient,
    url: str,
    target: FileTarget,
    headers: dict[str, str],
    writer: _PartWriter,
    progress: Progress,
    rate: RateLimiter,
    size_learned: SizeLearned | None,
) -> None:
    with map_transport_errors():
        async with client.stream("GET", url, headers=headers) as response:
            if _already_complete(response, writer.size):
                # A plain URL's part was whole when a kill came before the install.
                if size_learned is not None:
                    size_learned(writer.size)
                return
            raise_for_status(response)
            appending = response.status_code == 206 and _continues_at(response, writer.size)
            if not appending:
                if response.status_code != 200:
                    await anyio.to_thread.run_sync(writer.restart)
                    progress(0)
                    raise ServerRefused(f"unusable {response.status_code} reply: starting over")
                _check_length(response, target)
                if writer.size:
                    log.info("server sent the whole file: restarting %s", target.part.name)
                    await anyio.to_thread.run_sync(writer.restart)
                    progress(0)
            await anyio.to_thread.run_sync(_save_record, target, url, response)
            full_size = _full_size(response)
            if size_learned is not None and target.expected_size is None and full_size:
                size_learned(full_size)
            # Raw bytes unless the server insisted on compressing a whole-body reply.
            encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
            chunks = response.aiter_bytes() if encoded else response.aiter_raw()
            await _pump(chunks, writer, target, progress, rate)


async def _pump(
    chunks: AsyncIterator[bytes],
    writer: _PartWriter,
    target: FileTarget,
    progress: Progress,
    rate: RateLimiter,
) -> None:
    """Receive on the event loop while worker threads write and hash the previous
    batches: the three overlap, so a download costs about the slowest of them."""
    send, receive = anyio.create_memory_object_stream[list[bytes]](PIPELINE_DEPTH)

    async def write_batches() -> None:
        async with receive:
            async for batch in receive:
                await writer.write(batch)
                progress(writer.size)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(write_batches)
            async with send:
                pending: list[bytes] = []
                pending_size = 0
                batch_due = anyio.current_time() + BATCH_AGE
                received = writer.size
                dropped: httpx.HTTPError | None = None
                try:
                    async for chunk in chunks:
                        await rate.consume(len(chunk))
                        received += len(chunk)
                        if target.expected_size is not None and received > target.expected_size:
                            raise ServerRefused("server sent more bytes than the manifest says")
                        pending.append(chunk)
                        pending_size += len(chunk)
                        if pending_size >= WRITE_BATCH or anyio.current_time() >= batch_due:
                            await send.send(pending)
                            pending, pending_size = [], 0
                            batch_due = anyio.current_time() + BATCH_AGE
                except httpx.HTTPError as exc:
                    dropped = exc  # keep every byte that did arrive: the retry resumes after it
                if pending:
                    await send.send(pending)
        if dropped is not None:
            raise dropped
    except BaseExceptionGroup as group:
        raise first_error(group) from None


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return first_error(error)
        return error
    return group


def _keep_prefix_of_segmented_part(target: FileTarget) -> None:
    """A part written in segments has holes: one stream may only continue its prefix."""
    record = read_record(target)
    if record is None or record.done is None or target.part.is_symlink():
        return
    done = sorted(record.done)
    prefix = done[0][1] if done and done[0][0] == 0 else 0
    with open(target.part, "r+b") as handle:
        handle.truncate(prefix)
    plain = record.model_copy(update={"done": None})
    atomic_write_bytes(target.record_path, plain.model_dump_json(by_alias=True).encode())


def _already_complete(response: httpx.Response, offset: int) -> bool:
    """416 to ``Range: bytes=<offset>-`` with ``Content-Range: bytes */<offset>``: the
    part holds the whole file (its hash is still checked)."""
    if response.status_code != 416 or offset <= 0:
        return False
    content_range: str = response.headers.get("Content-Range", "")
    return content_range == f"bytes */{offset}"


def _full_size(response: httpx.Response) -> int | None:
    """The whole file's size as the reply states it (None when it does not, or is
    compressed)."""
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None
    if response.status_code == 206:
        match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        return int(match.group(3)) if match and match.group(3) != "*" else None
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _check_length(response: httpx.Response, target: FileTarget) -> None:
    """A whole-body reply of the wrong length (an HTML error page, say) is never written."""
    length = response.headers.get("Content-Length")
    encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
    expected = target.expected_size
    if length is not None and not encoded and expected is not None and int(length) != expected:
        raise ServerRefused(f"reply has {length} bytes, manifest says {expected}")


def _check_complete(target: FileTarget, writer: _PartWriter) -> str:
    if target.expected_size is not None and writer.size != target.expected_size:
        raise TransientError(f"got {writer.size} of {target.expected_size} bytes")
    digest = writer.hasher.hexdigest()
    if target.sha256 is not None and digest != target.sha256:
        raise ChecksumMismatch(
            f"{target.part.name}: SHA-256 {digest} does not match the manifest",
            expected=target.sha256,
            actual=digest,
        )
    return digest


__all__ = ["FileTarget", "SourceFailed", "TransientError", "discard_part", "fetch_once"]
