"""The last step of a download with piece hashes: every piece that did not match is
fetched again alone, by a bounded Range request, from another source first (the one
that sent it wrong last), and checked before it counts."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import anyio

from sidecar.errors import ChecksumMismatch
from sidecar.redact import redact_url
from sidecar.store.fsutil import atomic_write_bytes
from sidecar.transfer.connection import BodyConnection, Source, in_thread
from sidecar.transfer.fetch import CONTENT_RANGE, read_record
from sidecar.transfer.fileio import PartHandle
from sidecar.transfer.hashing import READ_SIZE
from sidecar.transfer.http import ServerRefused, SourceFailed, TransientError, check_status
from sidecar.transfer.network import Network
from sidecar.transfer.pieces import PieceBook, hash_span, host_of
from sidecar.transfer.ratelimit import RateLimiter
from sidecar.transfer.record import PartRecord

log = logging.getLogger(__name__)


async def finish_pieces(
    network: Network,
    sources: Sequence[Source],
    book: PieceBook,
    rate: RateLimiter,
    stall_timeout: float,
) -> str:
    """Check what no pass checked, fetch every bad piece again; the file's SHA-256 (the
    manifest's: every piece of it matched) or ``ChecksumMismatch``."""
    part = PartHandle(book.target.part)
    await anyio.to_thread.run_sync(part.open)
    try:
        await anyio.to_thread.run_sync(_check_unchecked, book, part)
        for index in sorted(set(book.bad) | set(book.undecided())):
            await _refetch(network, sources, book, part, index, rate, stall_timeout)
            book.flush()
        await anyio.to_thread.run_sync(part.sync)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(part.close)
            await anyio.to_thread.run_sync(save_verified, book)
    return book.target.sha256 or ""


def _check_unchecked(book: PieceBook, part: PartHandle) -> None:
    """Pieces a pass wrote but never hashed (a part found whole, say), from the disk."""
    buffer = memoryview(bytearray(READ_SIZE))
    for index in book.undecided():
        start, end = book.span(index)
        digest = hash_span(part.read_into, start, end, buffer)
        if digest is not None:
            book.check(index, digest, None)


def save_verified(book: PieceBook) -> None:
    """Blocking: the record's verified pieces brought up to date (the bytes are synced)."""
    record = read_record(book.target) or PartRecord(
        url="", expected_size=book.total, sha256=book.target.sha256
    )
    record = record.replace(**book.record_fields())
    atomic_write_bytes(book.target.record_path, record.to_json())


async def _refetch(
    network: Network,
    sources: Sequence[Source],
    book: PieceBook,
    part: PartHandle,
    index: int,
    rate: RateLimiter,
    stall_timeout: float,
) -> None:
    """Piece ``index`` from the sources still in use, those that did not send it wrong
    first; each is asked once."""
    usable = [s for s in sources if not book.is_dropped(s.url)]
    sent_wrong = book.bad.get(index, set())
    ordered = [s for s in usable if s.url not in sent_wrong] + [
        s for s in usable if s.url in sent_wrong
    ]
    start, end = book.span(index)
    problems: list[str] = []
    for source in ordered:
        log.info(
            "%s: fetching bytes %d-%d again from %s", book.name, start, end - 1, host_of(source.url)
        )
        connection = BodyConnection(network, source, stall_timeout)
        try:
            async with network.host_slots(source.url):
                digest = await in_thread(
                    connection, _fetch_range, connection, part, start, end, book.total, rate
                )
        except (TransientError, SourceFailed) as exc:
            problems.append(f"{host_of(source.url)}: {exc}")
            continue
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(connection.close)
        if book.check(index, digest, source.url):
            return
        problems.append(f"{host_of(source.url)}: wrong bytes")
    raise ChecksumMismatch(
        f"{book.name}: bytes {start}-{end - 1} do not match the manifest's hash from any "
        f"source ({'; '.join(problems) or 'every source was dropped'})",
        expected=book.pieces.digests[index],
        piece=index,
    )


def _fetch_range(
    connection: BodyConnection,
    part: PartHandle,
    start: int,
    end: int,
    total: int,
    rate: RateLimiter,
) -> str:
    """Blocking: bytes ``[start, end)`` by one bounded Range request, written at their
    offset and hashed on the way; their SHA-256."""
    response = connection.get({"Accept-Encoding": "identity", "Range": f"bytes={start}-{end - 1}"})
    check_status(response.status, redact_url(connection.url), response.headers.get("Retry-After"))
    match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if response.status != 206 or match is None or int(match.group(1)) != start:
        raise ServerRefused(f"HTTP {response.status} without the asked range")
    if match.group(3) != "*" and int(match.group(3)) != total:
        raise ServerRefused("the file on the server has another size")
    hasher = hashlib.sha256()
    view = connection.buffer
    position = start
    while position < end:
        want = min(len(view), end - position)
        if (cap := rate.bytes_per_second) is not None:
            want = min(want, max(16 * 1024, cap // 8))
            anyio.from_thread.run(rate.consume, want)
        count = connection.readinto(view[:want])
        part.write_at([view[:count]], position)
        hasher.update(view[:count])
        position += count
    connection.release(body_read=True)
    return hasher.hexdigest()
