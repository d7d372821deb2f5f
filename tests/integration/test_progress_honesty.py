"""bytesDone never goes backwards for a client, whatever the download does underneath:
a restart from zero, a checksum retry, a resume, a pause."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faults import IgnoreRange, ResetAfter, WrongBytes, chain, parts_of
from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import Sidecar

BIG = os.urandom(4_000_000)
FILES = {"w.bin": BIG, "small.txt": b"s" * 1000}
TOTAL = sum(map(len, FILES.values()))
W_PATH = "/storage/models/m/1/w.bin"


@pytest.fixture(autouse=True)
def _model(repo: RepoServer) -> Iterator[None]:
    repo.add("m", "1", FILES)
    repo.bytes_per_second = 8_000_000
    yield
    repo.fault = None


class Poller:
    """Polls getTask as fast as it answers while the task runs (a client's other view)."""

    def __init__(self, sidecar: Sidecar, task_id: str) -> None:
        self.sidecar = sidecar
        self.task_id = task_id
        self.seen: list[int] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                task = self.sidecar.call("getTask", {"taskId": self.task_id}, timeout=5)
            except Exception:
                return
            self.seen.append(task["bytesDone"])
            if task["state"] in {"ready", "failed", "cancelled"}:
                return

    def stop(self) -> list[int]:
        self.done.set()
        self.thread.join(10)
        return self.seen


def seen_by_notifications(sidecar: Sidecar, task_id: str) -> list[dict]:
    return [
        n["params"]
        for n in sidecar.notifications
        if n["method"] in ("task.progress", "task.state") and n["params"]["taskId"] == task_id
    ]


def assert_honest(values: list[int], total: int) -> None:
    assert values, "no progress seen"
    backwards = [(a, b) for a, b in itertools.pairwise(values) if b < a]
    assert not backwards, f"bytesDone went backwards: {backwards[:5]}"
    assert all(0 <= v <= total for v in values), "bytesDone outside 0..bytesTotal"


def run_and_watch(sidecar: Sidecar) -> tuple[dict, list[dict], list[int]]:
    task_id = sidecar.call("install", {"modelId": "m"})["taskId"]
    poller = Poller(sidecar, task_id)
    task = sidecar.wait_task(task_id, {"ready", "failed"}, timeout=60)
    polled = poller.stop()
    sidecar.wait_for(
        lambda: any(p["state"] == task["state"] for p in seen_by_notifications(sidecar, task_id)),
        what="the final task.state",
    )
    return task, seen_by_notifications(sidecar, task_id), polled


def test_restart_from_zero_does_not_move_progress_back(start_sidecar, repo: RepoServer):
    """The server ignores Range on the resume: the part starts over from byte 0."""
    repo.fault = chain(ResetAfter(2_500_000, match=W_PATH), IgnoreRange(times=None))
    task, notes, polled = run_and_watch(start_sidecar())
    assert task["state"] == "ready", task
    assert_honest([n["bytesDone"] for n in notes], TOTAL)
    assert_honest(polled, TOTAL)
    assert notes[-1]["bytesDone"] == notes[-1]["bytesTotal"] == TOTAL
    assert repo.bytes_sent[W_PATH] >= 2_000_000 + len(BIG)  # it really did start over


def test_checksum_retry_does_not_move_progress_back(start_sidecar, repo: RepoServer):
    repo.fault = WrongBytes(match=W_PATH)
    task, notes, polled = run_and_watch(start_sidecar())
    assert task["state"] == "ready", task
    assert_honest([n["bytesDone"] for n in notes], TOTAL)
    assert_honest(polled, TOTAL)
    assert repo.bytes_sent[W_PATH] == 2 * len(BIG)


def test_resume_after_a_drop_does_not_move_progress_back(start_sidecar, repo: RepoServer):
    repo.fault = ResetAfter(1_700_000, times=2, match=W_PATH)
    task, notes, polled = run_and_watch(start_sidecar())
    assert task["state"] == "ready", task
    assert_honest([n["bytesDone"] for n in notes], TOTAL)
    assert_honest(polled, TOTAL)


def test_pause_and_resume_do_not_move_progress_back(start_sidecar, repo: RepoServer, home: Path):
    repo.bytes_per_second = 2_000_000
    sidecar = start_sidecar()
    task_id = sidecar.call("install", {"modelId": "m"})["taskId"]
    for _ in range(2):
        sidecar.wait_for(
            lambda: sum(p.stat().st_size for p in parts_of(home, "m").values()) > 1_100_000,
            what="a partial download",
        )
        sidecar.call("pause", {"taskId": task_id})
        sidecar.wait_task(task_id, {"paused"})
        sidecar.call("resume", {"taskId": task_id})
    repo.bytes_per_second = None
    task = sidecar.wait_task(task_id, {"ready", "failed"})
    assert task["state"] == "ready", task
    notes = seen_by_notifications(sidecar, task_id)
    assert_honest([n["bytesDone"] for n in notes], TOTAL)
    assert task["bytesDone"] == TOTAL
