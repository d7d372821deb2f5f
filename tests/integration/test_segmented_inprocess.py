"""SegmentedFetch in-process against the loopback test server, under blockbuster:
the ranges on disk are recorded as bytes arrive (not only on the timer), and a
finished file never waits for the save timer."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anyio
import pytest
from blockbuster import blockbuster_ctx

from sidecar import segmented
from sidecar.config import Settings
from sidecar.fetch import FileTarget, read_record
from sidecar.http import make_client
from sidecar.segmented import Limits, SegmentedFetch
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
    settings = Settings(home=home, repositories=(repo.url,))
    url = f"{repo.url}/storage/models/big/1/w.bin"
    seen: list[int] = []

    async def scenario() -> str:
        client = make_client(settings)
        with blockbuster_ctx():
            async with client:
                fetch = SegmentedFetch(client, url, target, {}, seen.append, Limits())
                with anyio.fail_after(60):
                    return await fetch.run()

    assert anyio.run(scenario) == target.sha256
    assert target.part.read_bytes() == DATA
    assert len(saves) >= 5, saves  # ~10 byte-triggered saves plus the last one
    record = read_record(target)
    assert record is not None and record.done == [(0, SIZE)]
    assert seen[-1] == SIZE
