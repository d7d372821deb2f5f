"""Issue 15, item 1: a resumed download shows the verified bytes on disk from its first
notification (a pre-sized segmented part is not "done"), never less afterwards, and an
ETA once its speed is known; `listTasks` shows a paused task's bytes on disk."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

from tests.support.faults import HttpStatus, ShortBody, chain
from tests.support.repo_server import RepoServer

SIZE = 40 * 1024 * 1024  # past the segmented threshold: its part is pre-sized
DATA = os.urandom(SIZE)


def recorded_bytes(home: Path) -> int:
    records = list((home / "temp").glob("*.part.json"))
    if not records:
        return 0
    done = json.loads(records[0].read_text()).get("done") or []
    return sum(b - a for a, b in done)


def notes_of(sidecar, task_id: str) -> list[dict]:
    return [
        n["params"]
        for n in sidecar.notifications
        if n["method"] in ("task.progress", "task.state") and n["params"]["taskId"] == task_id
    ]


def interrupted(start_sidecar, repo: RepoServer, home: Path) -> tuple[str, int]:
    """A download cut off (the process killed, as a crash or a lost session) past 6 MB."""
    repo.add("big", "1", {"w.bin": DATA})
    repo.bytes_per_second = 1_000_000  # per connection
    first = start_sidecar()
    task_id = first.call("install", {"modelId": "big"})["taskId"]
    first.wait_for(lambda: recorded_bytes(home) > 6_000_000, timeout=30, what="6 MB recorded")
    first.kill()
    part = next((home / "temp").glob("*.part"))
    assert part.stat().st_size == SIZE  # pre-sized: its size says nothing about progress
    return task_id, recorded_bytes(home)


def test_a_rerun_install_starts_at_the_bytes_on_disk(start_sidecar, repo: RepoServer, home):
    _, on_disk = interrupted(start_sidecar, repo, home)
    repo.bytes_per_second = 3_000_000
    second = start_sidecar()
    task_id = second.call("install", {"modelId": "big"})["taskId"]
    second.wait_for(
        lambda: any(
            n["state"] == "downloading" and n["etaSeconds"] is not None
            for n in notes_of(second, task_id)
        ),
        timeout=30,
        what="a progress notification with an ETA",
    )
    notes = notes_of(second, task_id)
    assert notes[0]["bytesDone"] >= on_disk, (notes[0], on_disk)
    assert all(n["bytesDone"] < SIZE for n in notes), notes[:3]  # never 100 % early
    done = [n["bytesDone"] for n in notes]
    assert all(b >= a for a, b in itertools.pairwise(done)), done


def test_a_restart_resumes_without_dropping_to_zero(start_sidecar, repo: RepoServer, home):
    task_id, on_disk = interrupted(start_sidecar, repo, home)
    second = start_sidecar()  # resumes the saved task by itself
    second.wait_for(
        lambda: any(n["bytesDone"] > on_disk + 1_000_000 for n in notes_of(second, task_id)),
        timeout=30,
        what="progress past the bytes on disk",
    )
    done = [n["bytesDone"] for n in notes_of(second, task_id)]
    assert done[0] >= on_disk, (done[:5], on_disk)
    assert all(b >= a for a, b in itertools.pairwise(done)), done


def test_tasks_shows_a_paused_task_with_its_bytes_on_disk(start_sidecar, repo, home):
    repo.add("big", "1", {"w.bin": DATA})
    repo.bytes_per_second = 1_000_000
    first = start_sidecar()
    task_id = first.call("install", {"modelId": "big"})["taskId"]
    first.wait_for(lambda: recorded_bytes(home) > 4_000_000, timeout=30, what="4 MB recorded")
    first.call("pause", {"taskId": task_id})
    first.wait_task(task_id, {"paused"})
    on_disk = recorded_bytes(home)
    assert first.stop() == 0
    second = start_sidecar()
    [task] = second.call("listTasks")["tasks"]
    assert task["state"] == "paused"
    assert (task["bytesDone"], task["bytesTotal"]) == (on_disk, SIZE)


def test_a_failed_task_with_partial_data_is_remembered(start_sidecar, repo: RepoServer, home):
    data = os.urandom(3_000_000)
    path = "/storage/models/f/1/w.bin"
    repo.add("f", "1", {"w.bin": data})
    repo.fault = chain(ShortBody(1_000_000, match=path), HttpStatus(404, times=None, match=path))
    first = start_sidecar()
    failed = first.install_and_wait("f")
    assert failed["state"] == "failed", failed
    assert first.stop() == 0
    repo.fault = None
    second = start_sidecar()
    [kept] = second.call("listTasks")["tasks"]
    assert (kept["taskId"], kept["state"]) == (failed["taskId"], "failed")
    assert (kept["bytesDone"], kept["bytesTotal"]) == (2_000_000, 3_000_000)
    assert kept["error"]["code"] == failed["error"]["code"]
    second.call("resume", {"taskId": kept["taskId"]})
    assert second.wait_task(kept["taskId"], {"ready", "failed"})["state"] == "ready"
    assert repo.bytes_sent[path] == 3_000_000  # the 2 MB kept were not fetched again
