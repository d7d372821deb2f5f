"""A segmented part checked while it downloads, from the page cache, so no second pass
is needed: without piece hashes the file's SHA-256 follows its contiguous prefix; with
them each piece is hashed once all of its bytes are on disk (in any order), and the
pieces an earlier attempt wrote but did not verify are checked before anything is
fetched."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import anyio

from sidecar.transfer.fileio import PartHandle
from sidecar.transfer.hashing import READ_SIZE
from sidecar.transfer.http import TransientError
from sidecar.transfer.pieces import PieceBook, SourceDropped, hash_span
from sidecar.transfer.plan import SegmentPlan

# Until more bytes are booked on the plan.
Progressed = Callable[[], Awaitable[None]]


async def hash_prefix(
    file: PartHandle,
    plan: SegmentPlan,
    total: int,
    hasher: hashlib._Hash,
    progressed: Progressed,
) -> None:
    """Hash bytes in file order as soon as they are on disk (from the page cache)."""
    buffer = bytearray(READ_SIZE)  # one buffer for the whole file: memory stays flat
    hashed = 0
    while hashed < total:
        end = plan.contiguous_end()
        if end <= hashed:
            await progressed()
            continue
        while hashed < end:
            size = min(len(buffer), end - hashed)
            view = memoryview(buffer)[:size]
            count = await anyio.to_thread.run_sync(file.read_into, view, hashed)
            if count != size:
                raise TransientError("part shorter than its recorded ranges")
            await anyio.to_thread.run_sync(hasher.update, view)
            hashed += size


def check_stale_pieces(book: PieceBook, plan: SegmentPlan, file: PartHandle) -> None:
    """Blocking: pieces an earlier attempt wrote but did not verify, hashed from the
    disk before anything is fetched; wrong ones become gaps again."""
    buffer = memoryview(bytearray(READ_SIZE))
    for index in book.undecided():
        if book.covered(index, plan.done):
            start, end = book.span(index)
            digest = hash_span(file.read_into, start, end, buffer)
            if digest is None or not book.check(index, digest, None):
                plan.forget(start, end)


async def verify_pieces(
    book: PieceBook, plan: SegmentPlan, file: PartHandle, url: str, progressed: Progressed
) -> None:
    """Each piece hashed from the page cache as soon as all of its bytes are on disk
    (in any order); a piece that does not match stays for the caller to fetch again
    elsewhere, and a source with too many of them is dropped."""
    buffer = memoryview(bytearray(READ_SIZE))  # one buffer for the file: memory stays flat
    while undecided := book.undecided():
        ready = [i for i in undecided if book.covered(i, plan.done)]
        if not ready:
            await progressed()
            continue
        for index in ready:
            start, end = book.span(index)
            digest = await anyio.to_thread.run_sync(hash_span, file.read_into, start, end, buffer)
            if digest is None:
                raise TransientError("part shorter than its recorded ranges")
            book.check(index, digest, url)
            if book.is_dropped(url):
                book.flush()
                raise SourceDropped.of(url)
        book.flush()
