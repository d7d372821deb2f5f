"""Piece hashes: a file verified slice by slice as it lands, so a resume keeps every
verified piece whatever source it came from, and a bad piece is fetched again alone
(from another mirror when there is one) instead of the whole file.

With piece hashes each byte is hashed once, into its piece's SHA-256; the whole file's
digest is not computed again on the way (it would double the hashing): every piece
matching the manifest that also gives the file's digest is the same proof, piece by
piece. Without piece hashes nothing here runs and the whole-file digest decides.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from sidecar.transfer.http import SourceFailed
from sidecar.transfer.plan import merge, subtract
from sidecar.transfer.record import PartRecord
from sidecar.transfer.target import FileTarget, Notice, Pieces

log = logging.getLogger(__name__)

# Bad pieces one source may send for one file before it is dropped for that file: one
# or two can be a flaky disk or cache; three is a mirror serving another file.
BAD_PIECES_PER_SOURCE = 3
PIECE_MISMATCH = "PIECE_MISMATCH"
SOURCE_DROPPED = "SOURCE_DROPPED"


class SourceDropped(SourceFailed):
    """This source sent too many pieces that did not match: the next mirror takes over."""

    @classmethod
    def of(cls, url: str) -> SourceDropped:
        return cls(f"{host_of(url)} sends pieces that do not match")


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1] or "the server"


class PieceBook:
    """Which pieces of one file are verified, which failed and from where. Touched from
    body threads and the event loop, so a lock guards it; notices wait in ``pending``
    until the event loop sends them (``flush``)."""

    def __init__(self, target: FileTarget, notice: Notice | None = None) -> None:
        assert target.pieces is not None and target.expected_size is not None
        self.pieces: Pieces = target.pieces
        self.total = target.expected_size
        self.target = target
        self.name = target.label or target.part.name
        self.notice = notice
        self.verified: set[int] = set()
        self.bad: dict[int, set[str]] = {}  # piece → the sources that sent it wrong
        self.bad_counts: Counter[str] = Counter()
        self.dropped: set[str] = set()
        self.pending: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    @property
    def count(self) -> int:
        return len(self.pieces.digests)

    def span(self, index: int) -> tuple[int, int]:
        return self.pieces.span(index, self.total)

    def adopt(self, record: PartRecord | None) -> None:
        """Take the verified pieces of a record written for this very file (same size,
        digest and piece size), whatever URL or validator it names."""
        if (
            record is None
            or record.verified is None
            or record.piece_size != self.pieces.size
            or record.sha256 != self.target.sha256
            or record.expected_size != self.total
        ):
            return
        with self.lock:
            for first, end in record.verified:
                self.verified.update(range(max(0, first), min(end, self.count)))

    def record_fields(self) -> dict[str, Any]:
        with self.lock:
            indexes = sorted(self.verified)
        return {"piece_size": self.pieces.size, "verified": merge([(i, i + 1) for i in indexes])}

    def verified_bytes(self) -> int:
        with self.lock:
            return sum(self.span(i)[1] - self.span(i)[0] for i in self.verified)

    def resume_point(self) -> int:
        """Where one stream goes on, in bytes: after the run of pieces from the start that
        are verified, or known bad (fetched again alone at the end)."""
        with self.lock:
            index = 0
            while index in self.verified or index in self.bad:
                index += 1
        return self.span(index)[0] if index < self.count else self.total

    def forget_from(self, offset: int) -> None:
        """The part is cut at ``offset``: pieces past it are no longer on disk."""
        with self.lock:
            self.verified = {i for i in self.verified if self.span(i)[1] <= offset}
            self.bad = {i: s for i, s in self.bad.items() if self.span(i)[1] <= offset}

    def undecided(self) -> list[int]:
        with self.lock:
            return [i for i in range(self.count) if i not in self.verified and i not in self.bad]

    def covered(self, index: int, done: list[tuple[int, int]]) -> bool:
        return not subtract(self.span(index), done)

    @property
    def complete(self) -> bool:
        return len(self.verified) == self.count

    def check(self, index: int, digest: str, url: str | None) -> bool:
        """Book piece ``index``'s digest as computed from the bytes on disk. ``url``: where
        they came from in this attempt (None: left by an earlier one, not held against
        any source). A mismatch is logged and noted for the task's history; the source's
        third is the last it sends for this file."""
        if digest == self.pieces.digests[index]:
            with self.lock:
                self.verified.add(index)
                self.bad.pop(index, None)
            return True
        if url is None:
            return False
        start, end = self.span(index)
        host = host_of(url)
        with self.lock:
            self.bad.setdefault(index, set()).add(url)
            self.bad_counts[url] += 1
            drop = self.bad_counts[url] >= BAD_PIECES_PER_SOURCE and url not in self.dropped
            if drop:
                self.dropped.add(url)
            message = (
                f"{self.name}: bytes {start}-{end - 1} (piece {index + 1} of {self.count}) "
                f"from {host} did not match the manifest's hash; fetching that piece again"
            )
            self.pending.append((PIECE_MISMATCH, message))
            if drop:
                self.pending.append((SOURCE_DROPPED, (
                    f"{self.name}: {host} sent {BAD_PIECES_PER_SOURCE} pieces that did not "
                    "match the manifest; it is not used again for this file"
                )))  # fmt: skip
        log.warning("%s", message)
        if drop:
            log.warning("%s: dropping %s for this file (bad pieces)", self.name, host)
        return False

    def is_dropped(self, url: str) -> bool:
        with self.lock:
            return url in self.dropped

    def flush(self) -> None:
        """Send the pending notices (on the event loop's thread)."""
        with self.lock:
            pending, self.pending = self.pending, []
        if self.notice is not None:
            for code, message in pending:
                self.notice(code, message)


class PieceHasher:
    """Pieces hashed from bytes that arrive in file order (one stream): each byte goes
    through SHA-256 once, and each finished piece is booked. It may start inside a piece
    (a kill cut it): ``prime`` hashes that piece's head from the disk, and a mismatch of
    that piece is held against no source (its head came from an earlier attempt)."""

    def __init__(self, book: PieceBook, offset: int, url: str) -> None:
        self.book = book
        self.url = url
        self.index = offset // book.pieces.size
        self.hasher = hashlib.sha256()
        self.filled = offset - self.index * book.pieces.size
        self.blame: str | None = url if self.filled == 0 else None

    def prime(self, read_into: Callable[[memoryview, int], int], buffer: memoryview) -> bool:
        """Blocking: hash the head of the current piece from the disk; False if short."""
        start = self.index * self.book.pieces.size
        position, end = start, start + self.filled
        while position < end:
            view = buffer[: min(len(buffer), end - position)]
            count = read_into(view, position)
            if count <= 0:
                return False
            self.hasher.update(view[:count])
            position += count
        return True

    def update(self, view: memoryview) -> None:
        """Hash ``view`` and book each piece it finishes; ``SourceDropped`` when that
        piece was the source's last bad one."""
        size = self.book.pieces.size
        done = 0
        while done < len(view):
            take = min(len(view) - done, size - self.filled)
            self.hasher.update(view[done : done + take])
            done += take
            self.filled += take
            start, end = self.book.span(self.index)
            if self.filled == end - start:
                blamed = self.blame
                matched = self.book.check(self.index, self.hasher.hexdigest(), blamed)
                self.index += 1
                self.hasher = hashlib.sha256()
                self.filled = 0
                self.blame = self.url
                if not matched and blamed is not None and self.book.is_dropped(blamed):
                    raise SourceDropped.of(blamed)  # the bad piece that was one too many


def hash_span(
    read_into: Callable[[memoryview, int], int], start: int, end: int, buffer: memoryview
) -> str | None:
    """SHA-256 of bytes ``[start, end)`` read through ``read_into(view, offset)``
    (blocking); None when the part holds fewer bytes."""
    hasher = hashlib.sha256()
    position = start
    while position < end:
        view = buffer[: min(len(buffer), end - position)]
        count = read_into(view, position)
        if count <= 0:
            return None
        hasher.update(view[:count])
        position += count
    return hasher.hexdigest()
