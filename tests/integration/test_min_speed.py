"""A download that crawls (a server that drips bytes, which no stall timeout sees) is
dropped and retried from the bytes on disk once it is slower than --min-speed over
--min-speed-window; a bandwidth cap of our own never counts as crawling."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import Sidecar

DATA = os.urandom(240_000)
FLOOR = ["--min-speed", "100000", "--min-speed-window", "1"]


def ranges_asked(repo: RepoServer) -> list[str]:
    return [r[2].get("Range", "") for r in repo.file_requests("slow")]


def test_a_crawling_reply_is_dropped_and_resumed(
    start_sidecar, repo: RepoServer, home: Path
) -> None:
    repo.add("slow", "1", {"w.bin": DATA})
    repo.bytes_per_second = 60_000  # below the floor of 100 kB/s, and never silent
    sidecar: Sidecar = start_sidecar(args=FLOOR)
    task = sidecar.install_and_wait("slow", timeout=60)
    assert task["state"] == "ready", task
    assert (home / "models/slow/1/w.bin").read_bytes() == DATA
    asked = ranges_asked(repo)
    assert len(asked) >= 2, asked  # dropped at least once...
    assert all(r.startswith("bytes=") and not r.startswith("bytes=0-") for r in asked[1:])
    assert repo.storage_bytes("slow") <= len(DATA) + 64 * 1024  # ...and resumed, not restarted
    assert "below the minimum" in sidecar.stderr()


def test_our_own_bandwidth_cap_is_not_crawling(start_sidecar, repo: RepoServer) -> None:
    repo.add("slow", "1", {"w.bin": DATA})
    sidecar: Sidecar = start_sidecar(args=[*FLOOR, "--max-bytes-per-second", "60000"])
    assert sidecar.install_and_wait("slow", timeout=60)["state"] == "ready"
    assert len(ranges_asked(repo)) == 1
