"""Fetch one large file over several ranged connections into a preallocated part,
written at offsets. The connection count adapts to the throughput and a slow tail is
split. What a reply must be is ``sidecar.transfer.ranged``'s; the bytes are checked as
they land by ``sidecar.transfer.partcheck``, so no second pass is needed.

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
import psutil

from sidecar.config import OPTION
from sidecar.errors import ChecksumMismatch
from sidecar.redact import redact_url
from sidecar.store.fsutil import atomic_write_bytes
from sidecar.transfer.connection import BodyConnection, Reply, Source, SpeedFloor, in_thread
from sidecar.transfer.fetch import WRITE_BATCH, first_error, read_record
from sidecar.transfer.fileio import PartHandle
from sidecar.transfer.http import TransientError, check_status
from sidecar.transfer.network import Network
from sidecar.transfer.partcheck import check_stale_pieces, hash_prefix, verify_pieces
from sidecar.transfer.pieces import PieceBook, PieceHasher
from sidecar.transfer.plan import SegmentPlan, Unit
from sidecar.transfer.ramp import INITIAL_CONNECTIONS, WINDOW, Ramp
from sidecar.transfer.ranged import (
    check_ranged_reply,
    first_record,
    kept_ranges,
    range_headers,
    reply_validator,
)
from sidecar.transfer.ratelimit import RateLimiter
from sidecar.transfer.record import PartRecord
from sidecar.transfer.target import FileTarget, Progress

log = logging.getLogger(__name__)

MIN_SPLIT = 4 * 1024 * 1024  # never split a tail into pieces smaller than this
SAVE_EVERY = 1.0  # seconds between durable records of the ranges on disk
SAVE_BYTES = 64 * 1024 * 1024  # ...or this many bytes, whichever comes first
UNIT_ATTEMPTS = 4


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
            await anyio.to_thread.run_sync(check_stale_pieces, self.book, self.plan, self.file)
        try:
            self.progress(self.plan.done_bytes)
            async with anyio.create_task_group() as group:
                if self.book is not None:
                    group.start_soon(
                        verify_pieces, self.book, self.plan, self.file, self.url, self._progressed
                    )
                else:
                    group.start_soon(
                        hash_prefix, self.file, self.plan, self.total, self.hasher, self._progressed
                    )
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
        """Which bytes on disk to keep (``sidecar.transfer.ranged.kept_ranges``)."""
        kept = kept_ranges(record, self.url, self.target, self.total, self.book is not None)
        if kept is None:
            return
        self.cross_source = kept.cross_source
        if self.book is not None and kept.same_file:
            self.book.adopt(record)
        self.plan = SegmentPlan(self.total, kept.done, self.plan.unit_size, self._align)
        self.validator = kept.validator

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
            start, started_at = self.received, anyio.current_time()
            cpu, idle = time.process_time(), _idle_seconds()
            await anyio.sleep(WINDOW)
            elapsed = anyio.current_time() - started_at
            rate = (self.received - start) / elapsed
            added = ramp.more(
                self.workers, rate, elapsed, time.process_time() - cpu, _idle_seconds() - idle
            )
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
        response = connection.get(range_headers(unit, self.validator))
        unbooked = 0
        body_read = False
        try:
            url = redact_url(connection.url)
            check_status(response.status, url, response.headers.get("Retry-After"))
            check_ranged_reply(unit, response, self.total, self.validator, self.cross_source)
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
        the pieces it only partly writes are hashed from the disk (``partcheck.verify_pieces``).
        None for a unit smaller than its piece: those bytes would be hashed twice."""
        book = self.book
        if book is None or position % book.pieces.size:
            return None
        if book.span(position // book.pieces.size)[1] > end:
            return None
        return PieceHasher(book, position, self.url)

    async def _progressed(self) -> None:
        """Until ``_mark_written`` books more bytes (the checks in partcheck wait)."""
        self.progressed = anyio.Event()
        await self.progressed.wait()

    def _received(self, unit: Unit, count: int) -> int:
        self.received += count
        if self.book is not None:
            self.book.flush()  # notices of pieces checked as they arrived
        return self._mark_written(unit, count)

    def _remember_validator(self, response: Reply) -> None:
        if not self.confirmed.is_set():
            self.validator = self.validator or reply_validator(response)
            self.record = first_record(self.url, response, self.total, self.target.sha256)
            self.confirmed.set()

    # --- durability --------------------------------------------------------------------

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


def _idle_seconds() -> float:
    """CPU seconds the whole machine has left idle since boot, all cores together: this
    worker runs at background priority, so its own CPU time alone cannot tell a line
    that is slow from a CPU that other processes keep busy. Time waiting for the disk
    is not idle here: a disk writing back is no reason for more connections either."""
    return float(psutil.cpu_times().idle)
