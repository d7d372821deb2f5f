"""Fetch one large file over several ranged connections into a preallocated part,
written at offsets. The connection count adapts to the throughput, a slow tail is
split, and a hasher follows the contiguous prefix so no second pass is needed.

Durability: data is fsynced before the ranges it covers are recorded in the part's
record, so after a kill -9 or power loss a restart fetches only what is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field

import anyio

from sidecar.config import OPTION
from sidecar.errors import ChecksumMismatch
from sidecar.redact import redact_url
from sidecar.store.fsutil import atomic_write_bytes
from sidecar.transfer.connection import BodyConnection, Reply, Source, SpeedFloor, in_thread
from sidecar.transfer.fetch import (
    CONTENT_RANGE,
    WRITE_BATCH,
    first_error,
    read_record,
    validator_of,
)
from sidecar.transfer.fileio import PartHandle
from sidecar.transfer.hashing import READ_SIZE
from sidecar.transfer.http import ServerRefused, TransientError, check_status
from sidecar.transfer.network import Network
from sidecar.transfer.pieces import PieceBook, PieceHasher, SourceDropped, hash_span
from sidecar.transfer.plan import SegmentPlan, Unit
from sidecar.transfer.ramp import INITIAL_CONNECTIONS, WINDOW, Ramp
from sidecar.transfer.ratelimit import RateLimiter
from sidecar.transfer.record import PartRecord
from sidecar.transfer.target import FileTarget, Progress

log = logging.getLogger(__name__)

MIN_SPLIT = 4 * 1024 * 1024  # never split a tail into pieces smaller than this
SAVE_EVERY = 1.0  # seconds between durable records of the ranges on disk
SAVE_BYTES = 64 * 1024 * 1024  # ...or this many bytes, whichever comes first
UNIT_ATTEMPTS = 4


class RangesUnsupported(Exception):
    """The server answered a ranged request with the whole body: use one stream."""


@dataclass
class Limits:
    """The worker's limits; defaults are the options' (sidecar.config.OPTIONS)."""

    max_connections: int = OPTION["max_connections_per_file"].default  # type: ignore[assignment]
    connections: anyio.CapacityLimiter = field(
        default_factory=lambda: anyio.CapacityLimiter(OPTION["max_connections_total"].default)
    )  # shared by every file
    rate: RateLimiter = field(default_factory=RateLimiter)
    # Body readers, one per connection held: as many as there may be connections, so
    # they never queue behind other thread work (anyio's default pool has 40).
    threads: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.threads = anyio.CapacityLimiter(self.connections.total_tokens)


class SegmentedFetch:
    def __init__(
        self,
        network: Network,
        source: Source,
        target: FileTarget,
        progress: Progress,
        limits: Limits,
        stall_timeout: float,
        floor: SpeedFloor | None = None,
        book: PieceBook | None = None,
    ) -> None:
        assert target.expected_size is not None
        self.floor = floor
        self.book = book
        self.cross_source = False  # resuming another URL's bytes on its validator
        self.network = network
        self.source = source
        self.url = source.url
        self.target = target
        self.stall_timeout = stall_timeout
        self.progress = progress
        self.limits = limits
        self.total = target.expected_size
        self.file = PartHandle(target.part)
        self.plan = SegmentPlan(self.total, [], max(MIN_SPLIT, self.total // 64), self._align)
        self.record: PartRecord | None = None
        self.validator: str | None = None
        self.confirmed = anyio.Event()  # the server did a ranged reply
        self.progressed = anyio.Event()
        self.hasher = hashlib.sha256()
        self.hashed = 0
        self.workers = 0
        self.received = 0  # bytes that arrived, for the connection count
        self.unsaved = 0  # bytes written since the last save
        self.save_wanted = anyio.Event()

    async def run(self) -> str:
        record = await anyio.to_thread.run_sync(read_record, self.target)
        self._resume_from(record)
        self.record = record
        if await anyio.to_thread.run_sync(self.file.open) != self.total:
            await anyio.to_thread.run_sync(self.file.truncate, self.total)  # preallocate
        if self.book is not None:
            await anyio.to_thread.run_sync(self._check_stale_pieces)
        try:
            self.progress(self.plan.done_bytes)
            async with anyio.create_task_group() as group:
                group.start_soon(self._verify_pieces if self.book else self._hash_prefix)
                if not self.plan.complete:
                    async with anyio.create_task_group() as saver:
                        saver.start_soon(self._save_periodically)
                        async with anyio.create_task_group() as fetchers:
                            self._add_worker(fetchers)  # the first probes for Range support
                            await self._adapt(fetchers)
                        saver.cancel_scope.cancel()  # the last record is saved below
        except BaseExceptionGroup as errors:
            raise first_error(errors) from None
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._save()
                finally:
                    await anyio.to_thread.run_sync(self.file.close)
        if self.book is not None:  # the bad pieces are fetched again by the caller
            return self.target.sha256 or "" if self.book.complete else ""
        digest = self.hasher.hexdigest()
        if self.target.sha256 is not None and digest != self.target.sha256:
            raise ChecksumMismatch(
                f"its SHA-256 is {digest}, the manifest says {self.target.sha256}",
                expected=self.target.sha256,
                actual=digest,
            )
        return digest

    def _resume_from(self, record: PartRecord | None) -> None:
        """Which bytes on disk to keep. Same URL: its ranges, under its validator. Piece
        hashes: the ranges of a record for this very file, from any URL (each piece is
        checked). Without them, another URL's ranges only under a strong validator of
        the same file size, sent as If-Range: another version answers 200, not 206."""
        if record is None or (record.done is None and not self.target.part.exists()):
            return
        same_url = record.url == self.url
        same_file = record.sha256 == self.target.sha256 and record.expected_size == self.total
        if not same_url and self.book is None:
            if validator_of(record) is None or record.expected_size != self.total:
                return
            self.cross_source = True
        elif not same_url and not same_file:
            return
        if self.book is not None and same_file:
            self.book.adopt(record)
        if record.done is not None:
            done = record.done
        else:  # a part from the single-stream path: its bytes are a prefix
            done = [(0, min(self.target.part.stat().st_size, self.total))]
        self.plan = SegmentPlan(self.total, done, self.plan.unit_size, self._align)
        self.validator = validator_of(record) if same_url or self.cross_source else None

    @property
    def _align(self) -> int:
        return self.book.pieces.size if self.book is not None else 1

    # --- connections -------------------------------------------------------------------

    def _add_worker(self, group: anyio.abc.TaskGroup) -> None:
        self.workers += 1
        group.start_soon(self._work)

    async def _adapt(self, group: anyio.abc.TaskGroup) -> None:
        """Open connections as ``Ramp`` says, judging each count once it has started; the
        rate is counted as bytes arrive."""
        await self.confirmed.wait()
        for _ in range(min(INITIAL_CONNECTIONS, self.limits.max_connections) - self.workers):
            self._add_worker(group)
        ramp = Ramp(self.limits.max_connections)
        while self.workers > 0 and not self.plan.complete:
            start, started_at, cpu = self.received, anyio.current_time(), time.process_time()
            await anyio.sleep(WINDOW)
            elapsed = anyio.current_time() - started_at
            rate = (self.received - start) / elapsed
            added = ramp.more(self.workers, rate, elapsed, time.process_time() - cpu)
            if not added:
                continue
            for _ in range(added):
                self._add_worker(group)
            name = self.target.part.name
            log.debug("%s: %d connections after %.0f MB/s", name, self.workers, rate / 1e6)
            await anyio.sleep(WINDOW)  # judge the new count once it has started

    async def _work(self) -> None:
        connection = BodyConnection(self.network, self.source, self.stall_timeout, self.floor)
        try:
            while (unit := self.plan.next_unit(MIN_SPLIT)) is not None:
                try:
                    await self._fetch_unit_with_retries(unit, connection)
                finally:
                    self.plan.release(unit)
        finally:
            self.workers -= 1
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(connection.close)

    async def _fetch_unit_with_retries(self, unit: Unit, connection: BodyConnection) -> None:
        for attempt in range(UNIT_ATTEMPTS):
            try:
                async with self.limits.connections, self.network.host_slots(self.url):
                    await in_thread(
                        connection, self._pump, unit, connection, limiter=self.limits.threads
                    )
                return
            except TransientError as exc:
                if attempt + 1 == UNIT_ATTEMPTS:
                    raise
                log.info("segment %d-%d: %s; retrying", unit.position, unit.end, exc)
                await anyio.sleep(0.2 * 2**attempt)

    def _range_headers(self, unit: Unit) -> dict[str, str]:
        headers = {
            "Accept-Encoding": "identity",
            "Range": f"bytes={unit.position}-{unit.end - 1}",
        }
        if self.validator:
            headers["If-Range"] = self.validator
        return headers

    def _check_ranged_reply(self, unit: Unit, response: Reply) -> None:
        status, header = response.status, response.headers.get
        if status != 206:
            raise RangesUnsupported(f"HTTP {status} to a ranged request")
        match = CONTENT_RANGE.match(header("Content-Range") or "")
        if not match or int(match.group(1)) != unit.position:
            raise ServerRefused("Content-Range does not start where asked")
        if match.group(3) != "*" and int(match.group(3)) != self.total:
            raise ServerRefused("the file on the server has another size")
        if (header("Content-Encoding") or "identity").lower() != "identity":
            raise ServerRefused("a compressed ranged reply")
        if self.cross_source and self.validator not in (header("ETag"), header("Last-Modified")):
            # A server that ignores If-Range: the one stream path starts over.
            raise RangesUnsupported("the new source does not confirm the part's validator")

    def _mark_written(self, unit: Unit, size: int) -> int:
        """Book ``size`` bytes written at the unit's position; returns the room left
        (the tail may have been given to another connection meanwhile)."""
        self.plan.mark_done(unit.position, unit.position + size)
        unit.position += size
        self.unsaved += size
        if self.unsaved >= SAVE_BYTES:
            self.save_wanted.set()
        self.progress(self.plan.done_bytes)
        self.progressed.set()
        return unit.end - unit.position

    # --- the body path (see sidecar.transfer.connection) ----------------------------------

    def _pump(self, unit: Unit, connection: BodyConnection) -> None:
        """Blocking: socket → buffer → part, booking what was written on the event loop
        every WRITE_BATCH bytes; the loop answers with the room left in the unit."""
        asked_end = unit.end  # the tail may be given to another connection meanwhile
        response = connection.get(self._range_headers(unit))
        unbooked = 0
        body_read = False
        try:
            url = redact_url(connection.url)
            check_status(response.status, url, response.headers.get("Retry-After"))
            self._check_ranged_reply(unit, response)
            if not self.confirmed.is_set():
                anyio.from_thread.run_sync(self._remember_validator, response)
            view = connection.buffer
            position, room = unit.position, unit.end - unit.position
            stream = self._stream_hasher(position, unit.end)
            while room > 0:
                want = min(len(view), room)
                rate = self.limits.rate.bytes_per_second
                if rate is not None:
                    want = min(want, max(64 * 1024, rate // 8))  # a smooth, fair cap
                    anyio.from_thread.run(self.limits.rate.consume, want)
                count = connection.readinto(view[:want])
                self.file.write_at([view[:count]], position)
                if stream is not None:  # each whole piece is booked before its bytes are
                    stream.update(view[:count])
                position, room, unbooked = position + count, room - count, unbooked + count
                if unbooked >= WRITE_BATCH or room == 0:
                    room, unbooked = (
                        anyio.from_thread.run_sync(self._received, unit, unbooked),
                        0,
                    )
            body_read = position == asked_end
        except Exception:
            if unbooked:  # written before the read failed: keep it
                with contextlib.suppress(Exception):
                    anyio.from_thread.run_sync(self._received, unit, unbooked)
            raise
        finally:
            # A body left unread (the tail went to another connection) would precede the
            # next reply on this connection: only a whole one lets it be reused.
            connection.release(body_read=body_read)

    def _stream_hasher(self, position: int, end: int) -> PieceHasher | None:
        """A hasher for the pieces this connection streams whole, from a piece's start;
        the pieces it only partly writes are hashed from the disk (``_verify_pieces``).
        None for a unit smaller than its piece: those bytes would be hashed twice."""
        book = self.book
        if book is None or position % book.pieces.size:
            return None
        if book.span(position // book.pieces.size)[1] > end:
            return None
        return PieceHasher(book, position, self.url)

    def _received(self, unit: Unit, count: int) -> int:
        self.received += count
        if self.book is not None:
            self.book.flush()  # notices of pieces checked as they arrived
        return self._mark_written(unit, count)

    def _remember_validator(self, response: Reply) -> None:
        if not self.confirmed.is_set():
            etag = response.headers.get("ETag")
            fresh = etag if etag and not etag.startswith("W/") else None
            self.validator = self.validator or fresh or response.headers.get("Last-Modified")
            self.record = PartRecord(
                url=self.url,
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                expected_size=self.total,
                sha256=self.target.sha256,
                done=[],
            )
            self.confirmed.set()

    # --- hashing and durability --------------------------------------------------------

    async def _hash_prefix(self) -> None:
        """Hash bytes in file order as soon as they are on disk (from the page cache)."""
        buffer = bytearray(READ_SIZE)  # one buffer for the whole file: memory stays flat
        while self.hashed < self.total:
            end = self.plan.contiguous_end()
            if end <= self.hashed:
                self.progressed = anyio.Event()
                await self.progressed.wait()
                continue
            while self.hashed < end:
                size = min(len(buffer), end - self.hashed)
                view = memoryview(buffer)[:size]
                count = await anyio.to_thread.run_sync(self.file.read_into, view, self.hashed)
                if count != size:
                    raise TransientError("part shorter than its recorded ranges")
                await anyio.to_thread.run_sync(self.hasher.update, view)
                self.hashed += size

    def _check_stale_pieces(self) -> None:
        """Blocking: pieces an earlier attempt wrote but did not verify, hashed from the
        disk before anything is fetched; wrong ones become gaps again."""
        book = self.book
        assert book is not None
        buffer = memoryview(bytearray(READ_SIZE))
        for index in book.undecided():
            if book.covered(index, self.plan.done):
                start, end = book.span(index)
                digest = hash_span(self.file.read_into, start, end, buffer)
                if digest is None or not book.check(index, digest, None):
                    self.plan.forget(start, end)

    async def _verify_pieces(self) -> None:
        """Each piece hashed from the page cache as soon as all of its bytes are on disk
        (in any order); a piece that does not match stays for the caller to fetch again
        elsewhere, and a source with too many of them is dropped."""
        book = self.book
        assert book is not None
        buffer = memoryview(bytearray(READ_SIZE))  # one buffer for the file: memory stays flat
        while undecided := book.undecided():
            ready = [i for i in undecided if book.covered(i, self.plan.done)]
            if not ready:
                self.progressed = anyio.Event()
                await self.progressed.wait()
                continue
            for index in ready:
                start, end = book.span(index)
                digest = await anyio.to_thread.run_sync(
                    hash_span, self.file.read_into, start, end, buffer
                )
                if digest is None:
                    raise TransientError("part shorter than its recorded ranges")
                book.check(index, digest, self.url)
                if book.is_dropped(self.url):
                    book.flush()
                    raise SourceDropped.of(self.url)
            book.flush()

    async def _save_periodically(self) -> None:
        """Record the ranges every second, and fsync every ``SAVE_BYTES`` so the disk
        writes behind the download rather than all at the end."""
        while True:
            with anyio.move_on_after(SAVE_EVERY):
                await self.save_wanted.wait()
            self.save_wanted = anyio.Event()
            self.unsaved = 0
            await self._save()

    async def _save(self) -> None:
        if self.record is None:
            return
        done = list(self.plan.done)
        await anyio.to_thread.run_sync(self.file.sync)  # data first, then the record
        fields = self.book.record_fields() if self.book is not None else {}
        record = self.record.replace(done=done, **fields)
        data = record.to_json()
        await anyio.to_thread.run_sync(atomic_write_bytes, self.target.record_path, data)
