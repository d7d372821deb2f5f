"""Fetch one file into its ``.part``: resume by Range + If-Range, hash as bytes arrive.

Only a 206 whose Content-Range starts exactly where the part ends is appended;
anything else starts the part over, so two versions of a file never mix. The
part's record (``.part.json``) says which URL and validator its bytes came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time

import anyio

from sidecar.errors import ChecksumMismatch
from sidecar.redact import redact_url
from sidecar.store.fsutil import atomic_write_bytes
from sidecar.transfer.connection import BodyConnection, Reply, Source, SpeedFloor, in_thread
from sidecar.transfer.fileio import PartHandle
from sidecar.transfer.hashing import hash_into
from sidecar.transfer.http import ServerRefused, SourceFailed, TransientError, check_status
from sidecar.transfer.network import Network
from sidecar.transfer.ratelimit import RateLimiter
from sidecar.transfer.target import FileTarget, Progress, SizeLearned
from sidecar.wire import PartRecord

log = logging.getLogger(__name__)

WRITE_BATCH = 1024 * 1024  # bytes between trips to the event loop with progress
BATCH_AGE = 0.25  # ...or fewer, once this long passed: a slow line still shows progress
SYNC_EVERY = 64 * 1024 * 1024
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


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

    def append(self, view: memoryview) -> None:
        """Blocking: write and hash; every ``SYNC_EVERY`` bytes flush what is written so
        far, so the disk keeps up behind the download instead of all at the end."""
        self.part.write_at([view], self.size)
        self.hasher.update(view)
        self.size += len(view)
        if self.size - self.synced >= SYNC_EVERY:
            self.part.sync()
            self.synced = self.size


def _save_record(target: FileTarget, url: str, response: Reply) -> None:
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


def _continues_at(response: Reply, offset: int) -> bool:
    match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    return match is not None and int(match.group(1)) == offset and encoding == "identity"


async def fetch_once(
    network: Network,
    source: Source,
    target: FileTarget,
    progress: Progress,
    rate: RateLimiter,
    stall_timeout: float,
    size_learned: SizeLearned | None = None,
    floor: SpeedFloor | None = None,
) -> str:
    """One attempt from one source over one connection. Returns the part's SHA-256."""
    writer = _PartWriter(target)
    await anyio.to_thread.run_sync(_keep_prefix_of_segmented_part, target)
    connection = BodyConnection(network, source, stall_timeout, floor)
    try:
        offset = await anyio.to_thread.run_sync(writer.open_for_resume)
        if target.expected_size is not None and offset > target.expected_size:
            await anyio.to_thread.run_sync(writer.restart)
            offset = 0
        progress(offset)
        if target.expected_size is None or offset < target.expected_size:
            record = await anyio.to_thread.run_sync(read_record, target)
            headers = _resume_headers(record, source.url, offset)
            async with network.host_slots(source.url):
                await _stream_into(
                    connection, target, headers, writer, progress, rate, size_learned
                )
        await anyio.to_thread.run_sync(writer.part.sync)
        return _check_complete(target, writer)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(connection.close)
            await anyio.to_thread.run_sync(writer.part.close)


async def _stream_into(
    connection: BodyConnection,
    target: FileTarget,
    headers: dict[str, str],
    writer: _PartWriter,
    progress: Progress,
    rate: RateLimiter,
    size_learned: SizeLearned | None,
) -> None:
    response = await in_thread(connection, connection.get, headers)
    if _already_complete(response, writer.size):
        # A plain URL's part was whole when a kill came before the install.
        if size_learned is not None:
            size_learned(writer.size)
        return
    check_status(response.status, redact_url(connection.url), response.headers.get("Retry-After"))
    appending = response.status == 206 and _continues_at(response, writer.size)
    if not appending:
        if response.status != 200:
            await anyio.to_thread.run_sync(writer.restart)
            progress(0)
            raise ServerRefused(f"unusable {response.status} reply: starting over")
        _check_length(response, target)
        if writer.size:
            log.info("server sent the whole file: restarting %s", target.part.name)
            await anyio.to_thread.run_sync(writer.restart)
            progress(0)
    await anyio.to_thread.run_sync(_save_record, target, connection.source.url, response)
    full_size = _full_size(response)
    if size_learned is not None and target.expected_size is None and full_size:
        size_learned(full_size)
    # The body as sent, never decoded: a compressed reply is bytes to check against the
    # manifest's size and digest, so no decompression can be made to run without bound.
    await in_thread(connection, _pump, connection, writer, target, progress, rate)


def _pump(
    connection: BodyConnection,
    writer: _PartWriter,
    target: FileTarget,
    progress: Progress,
    rate: RateLimiter,
) -> None:
    """Blocking: socket → buffer → part + hash, telling the event loop every
    ``WRITE_BATCH`` bytes (or ``BATCH_AGE`` seconds, so a slow line shows progress)."""
    view = connection.buffer
    booked_at, booked_size = time.monotonic(), writer.size
    try:
        while True:
            want = len(view)
            if (cap := rate.bytes_per_second) is not None:
                want = min(want, max(16 * 1024, cap // 8))  # a smooth, fair cap
                anyio.from_thread.run(rate.consume, want)
            count = connection.read_some(view[:want])
            if count == 0:
                break
            if target.expected_size is not None and writer.size + count > target.expected_size:
                raise ServerRefused("server sent more bytes than the manifest says")
            writer.append(view[:count])
            now = time.monotonic()
            if writer.size - booked_size >= WRITE_BATCH or now - booked_at >= BATCH_AGE:
                anyio.from_thread.run_sync(progress, writer.size)
                booked_at, booked_size = now, writer.size
        connection.release(body_read=True)
    finally:
        if writer.size != booked_size:  # every byte that did arrive counts; a retry resumes
            with contextlib.suppress(Exception):
                anyio.from_thread.run_sync(progress, writer.size)


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


def _already_complete(response: Reply, offset: int) -> bool:
    """416 to ``Range: bytes=<offset>-`` with ``Content-Range: bytes */<offset>``: the
    part holds the whole file (its hash is still checked)."""
    if response.status != 416 or offset <= 0:
        return False
    content_range: str = response.headers.get("Content-Range", "")
    return content_range == f"bytes */{offset}"


def _full_size(response: Reply) -> int | None:
    """The whole file's size as the reply states it (None when it does not)."""
    if response.status == 206:
        match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        return int(match.group(3)) if match and match.group(3) != "*" else None
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _check_length(response: Reply, target: FileTarget) -> None:
    """A whole-body reply of the wrong length (an HTML error page, a body compressed
    although we asked for identity) is never written."""
    length = response.headers.get("Content-Length")
    expected = target.expected_size
    if length is not None and expected is not None and length != str(expected):
        raise ServerRefused(f"reply has {length} bytes, manifest says {expected}")


def _check_complete(target: FileTarget, writer: _PartWriter) -> str:
    if target.expected_size is not None and writer.size != target.expected_size:
        raise TransientError(f"got {writer.size} of {target.expected_size} bytes")
    digest = writer.hasher.hexdigest()
    if target.sha256 is not None and digest != target.sha256:
        raise ChecksumMismatch(
            f"its SHA-256 is {digest}, the manifest says {target.sha256}",
            expected=target.sha256,
            actual=digest,
        )
    return digest


__all__ = ["FileTarget", "SourceFailed", "TransientError", "discard_part", "fetch_once"]
