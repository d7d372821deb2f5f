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
from sidecar.transfer.hashing import READ_SIZE, hash_into
from sidecar.transfer.http import ServerRefused, SourceFailed, TransientError, check_status
from sidecar.transfer.network import Network
from sidecar.transfer.pieces import PieceBook, PieceHasher, hash_span
from sidecar.transfer.ratelimit import RateLimiter
from sidecar.transfer.record import PartRecord
from sidecar.transfer.target import FileTarget, Progress, SizeLearned

log = logging.getLogger(__name__)

WRITE_BATCH = 1024 * 1024  # bytes between trips to the event loop with progress
BATCH_AGE = 0.25  # ...or fewer, once this long passed: a slow line still shows progress
SYNC_EVERY = 64 * 1024 * 1024
SAVE_EVERY = 1.0  # seconds between records of the verified pieces (with piece hashes)
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def read_record(target: FileTarget) -> PartRecord | None:
    try:
        return PartRecord.from_json(target.record_path.read_bytes())
    except (OSError, ValueError):
        return None


def discard_part(target: FileTarget) -> None:
    target.part.unlink(missing_ok=True)
    target.record_path.unlink(missing_ok=True)


class _PartWriter:
    """The part, appended to in order, and its running hash: the whole file's, or with
    piece hashes each piece's (``sidecar.transfer.pieces``), never both."""

    def __init__(self, target: FileTarget, book: PieceBook | None = None, url: str = "") -> None:
        self.target = target
        self.part = PartHandle(target.part)
        self.hasher = hashlib.sha256()
        self.book = book
        self.url = url
        self.pieces: PieceHasher | None = None
        self.size = 0
        self.synced = 0
        self.record: PartRecord | None = None
        self.saved_at = time.monotonic()

    def open_for_resume(self) -> int:
        """Blocking: open the part and hash what it holds (a resume re-hashes it once).
        With piece hashes, keep the pieces verified (the record's, and whole pieces on
        disk that match), whatever source they came from, and hash nothing twice."""
        on_disk = self.part.open()
        if self.book is None:
            self.hasher = hashlib.sha256()
            self.size = hash_into(self.hasher, self.target.part)
        else:
            self.size, self.pieces = self._verified_prefix(on_disk)
        self.part.truncate(self.size)
        self.synced = self.size
        return self.size

    def _verified_prefix(self, on_disk: int) -> tuple[int, PieceHasher]:
        """Where one stream goes on with piece hashes: after the pieces from the start
        that are verified (on record, or whole on disk and matching), and within the
        piece a kill cut, after its bytes on disk (hashed again, checked once whole)."""
        book = self.book
        assert book is not None
        buffer = memoryview(bytearray(READ_SIZE))
        for index in book.undecided():  # whole pieces left by an earlier attempt
            start, end = book.span(index)
            if end > on_disk or start > book.resume_point():
                break
            digest = hash_span(self.part.read_into, start, end, buffer)
            if digest is None or not book.check(index, digest, None):
                break
        boundary = min(book.resume_point(), on_disk - on_disk % book.pieces.size)
        if on_disk >= book.total:
            boundary = min(book.resume_point(), book.total)
        book.forget_from(boundary)
        keep = boundary
        if boundary < book.total and book.span(boundary // book.pieces.size)[1] > on_disk:
            keep = on_disk  # the piece the kill cut: its head is kept
        hasher = PieceHasher(book, keep, self.url)
        if not hasher.prime(self.part.read_into, buffer):
            hasher, keep = PieceHasher(book, boundary, self.url), boundary
        return keep, hasher

    def restart(self) -> None:
        self.part.truncate(0)
        self.hasher = hashlib.sha256()
        self.size = self.synced = 0
        if self.book is not None:
            self.book.forget_from(0)
            self.pieces = PieceHasher(self.book, 0, self.url)

    def append(self, view: memoryview) -> None:
        """Blocking: write and hash; every ``SYNC_EVERY`` bytes flush what is written so
        far, so the disk keeps up behind the download instead of all at the end."""
        self.part.write_at([view], self.size)
        if self.pieces is not None:
            self.pieces.update(view)
        else:
            self.hasher.update(view)
        self.size += len(view)
        if self.size - self.synced >= SYNC_EVERY:
            self.part.sync()
            self.synced = self.size
        if self.book is not None and time.monotonic() - self.saved_at >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Blocking: the verified pieces on record, their bytes on the disk first."""
        self.saved_at = time.monotonic()
        if self.book is None or self.record is None:
            return
        self.part.sync()
        self.synced = self.size
        record = self.record.replace(**self.book.record_fields())
        atomic_write_bytes(self.target.record_path, record.to_json())


def _save_record(
    target: FileTarget, url: str, response: Reply, book: PieceBook | None
) -> PartRecord:
    record = PartRecord(
        url=url,
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        expected_size=target.expected_size,
        sha256=target.sha256,
        **(book.record_fields() if book is not None else {}),
    )
    atomic_write_bytes(target.record_path, record.to_json())
    return record


def validator_of(record: PartRecord) -> str | None:
    """What If-Range may carry: a strong ETag, else Last-Modified."""
    strong_etag = record.etag if record.etag and not record.etag.startswith("W/") else None
    return strong_etag or record.last_modified


def _resume_headers(record: PartRecord | None, offset: int, pieces: bool) -> dict[str, str]:
    """Range from the part's end. Without piece hashes, If-Range with the validator the
    bytes came with, whatever URL they came from: a mirror or a new signed URL serving
    the same version answers 206, another version the whole file. With piece hashes
    the content is checked piece by piece, so no validator is needed."""
    headers = {"Accept-Encoding": "identity"}
    if offset <= 0:
        return headers
    headers["Range"] = f"bytes={offset}-"
    if not pieces and record is not None and (validator := validator_of(record)):
        headers["If-Range"] = validator
    return headers


def _resumable_elsewhere(record: PartRecord | None, url: str, target: FileTarget) -> bool:
    """Without piece hashes, bytes from another URL are kept only when their record has
    a strong validator (a strong ETag or Last-Modified) and the file's size."""
    if record is None or record.url == url:
        return True
    return validator_of(record) is not None and record.expected_size == target.expected_size


def _same_file(record: PartRecord | None, url: str, response: Reply) -> bool:
    """A 206 from another URL continues our bytes only when it names the same file: the
    same whole size, and the same strong ETag (or Last-Modified) as the record's (a
    server that ignores If-Range must not mix two versions)."""
    if record is None or record.url == url:
        return True
    size = _full_size(response)
    if record.expected_size is not None and size != record.expected_size:
        return False
    etag = response.headers.get("ETag")
    if record.etag and not record.etag.startswith("W/"):
        return etag == record.etag
    return response.headers.get("Last-Modified") == record.last_modified


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
    book: PieceBook | None = None,
) -> str:
    """One attempt from one source over one connection. Returns the part's SHA-256
    (with piece hashes: the manifest's once every piece matched, else "", and the
    pieces still bad are the caller's to fetch again)."""
    writer = _PartWriter(target, book, source.url)
    await anyio.to_thread.run_sync(_keep_prefix_of_segmented_part, target)
    connection = BodyConnection(network, source, stall_timeout, floor)
    try:
        record = await anyio.to_thread.run_sync(read_record, target)
        offset = await anyio.to_thread.run_sync(writer.open_for_resume)
        if offset and book is None and not _resumable_elsewhere(record, source.url, target):
            log.info("%s: another source, no validator to match: starting over", target.part.name)
            offset = 0
        if not offset or (target.expected_size is not None and offset > target.expected_size):
            await anyio.to_thread.run_sync(writer.restart)
            offset = 0
        progress(offset)
        if target.expected_size is None or offset < target.expected_size:
            headers = _resume_headers(record, offset, book is not None)
            async with network.host_slots(source.url):
                await _stream_into(
                    connection, target, headers, writer, progress, rate, size_learned, record
                )
        await anyio.to_thread.run_sync(writer.part.sync)
        return _check_complete(target, writer)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(connection.close)
            if book is not None:
                await anyio.to_thread.run_sync(writer.save)
            await anyio.to_thread.run_sync(writer.part.close)


async def _stream_into(
    connection: BodyConnection,
    target: FileTarget,
    headers: dict[str, str],
    writer: _PartWriter,
    progress: Progress,
    rate: RateLimiter,
    size_learned: SizeLearned | None,
    record: PartRecord | None = None,
) -> None:
    response = await in_thread(connection, connection.get, headers)
    if _already_complete(response, writer.size):
        # A plain URL's part was whole when a kill came before the install.
        if size_learned is not None:
            size_learned(writer.size)
        return
    check_status(response.status, redact_url(connection.url), response.headers.get("Retry-After"))
    appending = response.status == 206 and _continues_at(response, writer.size)
    if (
        appending
        and writer.book is None
        and not _same_file(record, connection.source.url, response)
    ):
        log.info("%s: the new source serves another file: starting over", target.part.name)
        await anyio.to_thread.run_sync(writer.restart)
        progress(0)
        raise ServerRefused("the new source's file differs from the part's: starting over")
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
    writer.record = await anyio.to_thread.run_sync(
        _save_record, target, connection.source.url, response, writer.book
    )
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
            writer.append(view[:count])  # SourceDropped after a source's last bad piece
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
    plain = record.replace(done=None)
    atomic_write_bytes(target.record_path, plain.to_json())


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
    if writer.book is not None:
        return target.sha256 or "" if writer.book.complete else ""
    digest = writer.hasher.hexdigest()
    if target.sha256 is not None and digest != target.sha256:
        raise ChecksumMismatch(
            f"its SHA-256 is {digest}, the manifest says {target.sha256}",
            expected=target.sha256,
            actual=digest,
        )
    return digest


__all__ = ["FileTarget", "SourceFailed", "TransientError", "discard_part", "fetch_once"]
