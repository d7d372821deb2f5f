"""SegmentedFetch in-process against the loopback test server, under blockbuster:
the ranges on disk are recorded as bytes arrive (not only on the timer), a finished
file never waits for the save timer, a redirect is resolved once for every
connection, and a cancelled read lets go of its thread at once."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from blockbuster import blockbuster_ctx

from sidecar.transfer import partcheck, segmented
from sidecar.transfer.connection import Source
from sidecar.transfer.fetch import read_record
from sidecar.transfer.network import Network
from sidecar.transfer.pieces import PieceBook
from sidecar.transfer.ranged import RangesUnsupported
from sidecar.transfer.segmented import Limits, SegmentedFetch
from sidecar.transfer.target import FileTarget, Pieces
from tests.support.faults import ChangeFile, CloseAfterReply, Redirect, Stall
from tests.support.repo_server import RepoServer

SIZE = 40 * 1024 * 1024
DATA = os.urandom(SIZE)


def test_ranges_are_saved_by_bytes_and_the_end_does_not_wait_for_the_timer(
    repo: RepoServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.add("big", "1", {"w.bin": DATA})
    monkeypatch.setattr(segmented, "SAVE_EVERY", 3600.0)  # the timer alone never fires
    monkeypatch.setattr(segmented, "SAVE_BYTES", 4 * 1024 * 1024)
    saves: list[int] = []
    real_write = segmented.atomic_write_bytes

    def counting_write(path: Path, data: bytes) -> None:
        saves.append(len(data))
        real_write(path, data)

    monkeypatch.setattr(segmented, "atomic_write_bytes", counting_write)
    target = FileTarget(
        part=home / "temp" / "big.part", expected_size=SIZE, sha256=hashlib.sha256(DATA).hexdigest()
    )
    url = f"{repo.url}/storage/models/big/1/w.bin"
    seen: list[int] = []
    network = Network(None, None, 16)
    assert network.ssl  # loads CA certificates: before the checks start

    async def scenario() -> str:
        with blockbuster_ctx():
            fetch = SegmentedFetch(network, Source(url), target, seen.append, Limits(), 30.0)
            with anyio.fail_after(60):
                return await fetch.run()

    assert anyio.run(scenario) == target.sha256
    assert target.part.read_bytes() == DATA
    assert len(saves) >= 5, saves  # ~10 byte-triggered saves plus the last one
    record = read_record(target)
    assert record is not None and record.done == [(0, SIZE)]
    assert seen[-1] == SIZE


def fetch_big(
    repo: RepoServer,
    home: Path,
    *,
    url: str | None = None,
    stall_timeout: float = 30.0,
    cancel_after: Callable[[], Awaitable[None]] | None = None,
    limits: Limits | None = None,
) -> str | None:
    """Fetch ``big`` in-process; None when ``cancel_after`` returned first."""
    target = FileTarget(
        part=home / "temp" / "big.part", expected_size=SIZE, sha256=hashlib.sha256(DATA).hexdigest()
    )
    url = url or f"{repo.url}/storage/models/big/1/w.bin"
    network = Network(None, None, 16)
    assert network.ssl  # loads CA certificates: before the checks start

    async def scenario() -> str | None:
        result: str | None = None
        with blockbuster_ctx():
            async with anyio.create_task_group() as group:
                fetch = SegmentedFetch(
                    network, Source.of(url, {}), target, lambda done: None,
                    limits or Limits(), stall_timeout,
                )  # fmt: skip

                async def run() -> None:
                    nonlocal result
                    result = await fetch.run()
                    group.cancel_scope.cancel()

                group.start_soon(run)
                with anyio.fail_after(60):
                    if cancel_after is not None:
                        await cancel_after()
                        group.cancel_scope.cancel()
                    else:
                        await anyio.sleep_forever()
        return result

    return anyio.run(scenario)


def test_a_redirect_is_resolved_once_for_every_connection(repo: RepoServer, home: Path) -> None:
    other = RepoServer().start()
    try:
        repo.add("big", "1", {"w.bin": DATA})
        other.models = repo.models
        repo.fault = Redirect(other.url, times=None)
        assert fetch_big(repo, home) == hashlib.sha256(DATA).hexdigest()
        assert (home / "temp" / "big.part").read_bytes() == DATA
        assert len(repo.file_requests("big")) == 1  # the one that was redirected
        assert len(other.file_requests("big")) >= 4  # every range went to the target
    finally:
        other.stop()


def test_cancelling_wakes_blocked_reads_at_once(repo: RepoServer, home: Path) -> None:
    repo.add("big", "1", {"w.bin": DATA})
    # The first reply is whole; every later one stalls after a megabyte for a minute,
    # and the stall timeout is longer still: only the socket shutdown ends those reads
    # early. (Without it the test fails after the minute rather than hang.)
    stall = Stall(60, after_bytes=1024 * 1024, skip=1, times=None, ranged=True)
    repo.fault = stall
    cancelled_at = 0.0
    try:

        async def once_reads_block() -> None:
            nonlocal cancelled_at
            while len(stall.hits) < 4:  # noqa: ASYNC110 (counted on the server's thread)
                await anyio.sleep(0.05)
            await anyio.sleep(0.5)  # the threads are now inside recv
            cancelled_at = time.monotonic()

        assert fetch_big(repo, home, stall_timeout=600, cancel_after=once_reads_block) is None
        assert time.monotonic() - cancelled_at < 30, "the reads waited for the server"
        target = FileTarget(part=home / "temp" / "big.part", expected_size=SIZE, sha256=None)
        record = read_record(target)
        assert record is not None and record.done  # what arrived was kept
    finally:
        stall.release()


def test_a_keep_alive_connection_the_server_closed_is_reopened_at_once(
    repo: RepoServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.add("big", "1", {"w.bin": DATA})
    repo.fault = CloseAfterReply(times=None, ranged=True)
    monkeypatch.setattr(segmented, "UNIT_ATTEMPTS", 1)  # a failed unit would fail the file
    two = Limits(max_connections=2)  # each connection then carries several units
    assert fetch_big(repo, home, limits=two) == hashlib.sha256(DATA).hexdigest()
    assert (home / "temp" / "big.part").read_bytes() == DATA


def test_credentials_in_the_url_are_sent_as_basic_auth(repo: RepoServer, home: Path) -> None:
    repo.add("big", "1", {"w.bin": DATA})
    url = repo.url.replace("http://", "http://reader:s3cret@") + "/storage/models/big/1/w.bin"
    assert fetch_big(repo, home, url=url) == hashlib.sha256(DATA).hexdigest()
    assert all(r[2].get("Authorization", "").startswith("Basic ") for r in repo.requests)


def test_a_file_changed_during_the_download_is_never_mixed_in(repo: RepoServer, home: Path) -> None:
    repo.add("big", "1", {"w.bin": DATA})
    # The third request finds a new file: its If-Range no longer matches.
    repo.fault = ChangeFile(repo, "big/1/w.bin", os.urandom(SIZE), skip=2, ranged=True)
    with pytest.raises(ExceptionGroup) as raised:
        fetch_big(repo, home)
    assert raised.group_contains(RangesUnsupported)  # the caller restarts on one stream
    target = FileTarget(part=home / "temp" / "big.part", expected_size=SIZE, sha256=None)
    record = read_record(target)
    part = target.part.read_bytes()
    assert record is not None and record.done
    assert all(part[a:b] == DATA[a:b] for a, b in record.done)  # only the old version's bytes


def test_whole_pieces_are_hashed_as_they_arrive_not_read_back(
    repo: RepoServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    piece = 4 * 1024 * 1024  # one segmented unit of this file: no piece is split
    repo.add("big", "1", {"w.bin": DATA})
    digests = tuple(hashlib.sha256(DATA[i : i + piece]).hexdigest() for i in range(0, SIZE, piece))
    target = FileTarget(
        part=home / "temp" / "big.part", expected_size=SIZE,
        sha256=hashlib.sha256(DATA).hexdigest(), pieces=Pieces(piece, digests),
    )  # fmt: skip
    read_back: list[tuple[int, int]] = []
    real_hash_span = partcheck.hash_span

    def counting(
        read_into: Callable[..., int], start: int, end: int, buffer: memoryview
    ) -> str | None:
        read_back.append((start, end))
        return real_hash_span(read_into, start, end, buffer)

    monkeypatch.setattr(partcheck, "hash_span", counting)
    url = f"{repo.url}/storage/models/big/1/w.bin"
    network = Network(None, None, 16)
    assert network.ssl
    book = PieceBook(target)

    async def scenario() -> str:
        with blockbuster_ctx():
            fetch = SegmentedFetch(network, Source(url), target, lambda done: None, Limits(),
                                   30.0, book=book)  # fmt: skip
            with anyio.fail_after(60):
                return await fetch.run()

    assert anyio.run(scenario) == target.sha256
    assert book.complete and target.part.read_bytes() == DATA
    assert read_back == []  # every piece was checked from the bytes as they arrived
