"""Downloads are background work: the transfer worker, and every thread it starts, runs
at a lower priority than the process the app started, which answers every method, so
the answers come first when the CPU is short."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.transfer.priority import BACKGROUND_NICENESS
from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import Sidecar

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


def nice_values(pid: int) -> dict[int, int]:
    values = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        values[int(task.name)] = int(fields[16])  # field 19 of stat: nice
    return values


def test_the_worker_runs_below_the_sidecar(
    start_sidecar: Callable[..., Sidecar], repo: RepoServer
) -> None:
    repo.add("whisper-small", "1.0.0", {"model.bin": os.urandom(1 << 20)})
    repo.bytes_per_second = 500_000  # the worker is still at work when we look
    sidecar = start_sidecar()
    task = sidecar.call("install", {"modelId": "whisper-small"})["taskId"]
    sidecar.wait_for(lambda: sidecar.call("getInfo")["workerPid"], what="the worker")
    info = sidecar.call("getInfo")
    assert sidecar.process is not None and info["pid"] == sidecar.process.pid
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    parent, worker = nice_values(info["pid"]), nice_values(info["workerPid"])
    assert set(parent.values()) == {ours}, parent
    sidecar.wait_for(lambda: len(nice_values(info["workerPid"])) > 1, what="worker threads")
    worker = nice_values(info["workerPid"])
    assert set(worker.values()) == {min(19, ours + BACKGROUND_NICENESS)}, worker
    repo.bytes_per_second = None
    assert sidecar.wait_task(task, {"ready", "failed"})["state"] == "ready"
