"""Several sidecar processes on one home: each file fetched once, all tasks end ready, no
lock left behind; a later process joins the owner's task and takes over when the owner
dies; a lock of a dead or hung holder never blocks beyond a check."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import portalocker
import pytest

from tests.support.faults import (
    assert_installed_exactly,
    parts_of,
    registry_agrees_with_disk,
)
from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import Sidecar

MODELS = {
    "alpha": {"w.bin": os.urandom(2_500_000), "tok.json": b'{"a": 1}'},
    "beta": {"w.bin": os.urandom(2_000_000), "cfg/x.txt": b"x" * 5000},
    "gamma": {"w.bin": os.urandom(1_500_000), "y.txt": b"y" * 700},
}
IN_FLIGHT = 1_500_000


def size_of(model_id: str) -> int:
    return sum(map(len, MODELS[model_id].values()))


def lock_files(home: Path) -> list[str]:
    found = [p.name for p in (home / "in-progress-downloads").glob("*")]
    found += [p.name for p in (home / "temp").glob("*.lock")]
    return found


def task_of(sidecar: Sidecar, model_id: str) -> dict:
    return next(t for t in sidecar.call("listTasks")["tasks"] if t["modelId"] == model_id)


def part_bytes(home: Path, model_id: str) -> int:
    total = 0
    for part in parts_of(home, model_id).values():
        with contextlib.suppress(FileNotFoundError):
            total += part.stat().st_size
    return total


@pytest.fixture
def models(repo: RepoServer) -> RepoServer:
    for model_id, files in MODELS.items():
        repo.add(model_id, "1", files)
    return repo


def test_processes_installing_overlapping_models_fetch_each_file_once(
    start_sidecar, models: RepoServer, home: Path
):
    models.bytes_per_second = 3_000_000
    plans = [["alpha", "beta"], ["beta", "gamma"], ["gamma", "alpha"], ["alpha", "beta", "gamma"]]
    sidecars = [start_sidecar() for _ in plans]
    started = []
    for sidecar, plan in zip(sidecars, plans, strict=True):
        for model_id in plan:
            started.append((sidecar, sidecar.call("install", {"modelId": model_id})))
    for sidecar, answer in started:
        if answer["taskId"] is not None:
            task = sidecar.wait_task(answer["taskId"], {"ready", "failed", "cancelled"}, 60)
            assert task["state"] == "ready", task
    for model_id in MODELS:
        assert models.storage_bytes(model_id) == size_of(model_id), model_id
        assert_installed_exactly(home, model_id, "1", MODELS[model_id])
    for sidecar in sidecars:  # every process sees what the others installed
        for model_id in MODELS:
            sidecar.wait_for(
                lambda s=sidecar, m=model_id: _path_or_none(s, m), timeout=5, what=model_id
            )
    registry_agrees_with_disk(home)
    for sidecar in sidecars:
        assert sidecar.stop() == 0
    assert lock_files(home) == []
    assert [p.name for p in (home / "temp").iterdir()] == []


def _path_or_none(sidecar: Sidecar, model_id: str) -> str | None:
    try:
        return sidecar.call("getModelPath", {"modelId": model_id})["path"]
    except Exception:
        return None


def test_a_second_process_installing_the_same_model_joins_the_running_task(
    start_sidecar, models: RepoServer, home: Path
):
    """One engine per home: the second sidecar attaches to the first, so its install is
    the running task (same id, same progress), not a second download waiting its turn."""
    models.bytes_per_second = 400_000
    first, second = start_sidecar(), start_sidecar()
    first_id = first.call("install", {"modelId": "alpha"})["taskId"]
    first.wait_for(lambda: part_bytes(home, "alpha") > 0, what="the first download")
    assert second.call("install", {"modelId": "alpha"})["taskId"] == first_id
    assert second.call("getInfo")["pid"] == first.call("getInfo")["pid"]
    second.wait_for(
        lambda: [
            n for n in second.notifications
            if n["method"] == "task.progress" and n["params"]["taskId"] == first_id
        ],
        what="the first process's progress, seen by the second",
    )  # fmt: skip
    models.bytes_per_second = None
    assert first.wait_task(first_id, {"ready", "failed"})["state"] == "ready"
    assert second.wait_task(first_id, {"ready", "failed"}, timeout=10)["state"] == "ready"
    assert models.storage_bytes("alpha") == size_of("alpha")


def test_the_attached_process_takes_over_and_resumes_when_the_owner_is_killed(
    start_sidecar, models: RepoServer, home: Path
):
    models.bytes_per_second = 2_000_000
    first, second = start_sidecar(), start_sidecar()
    task_id = first.call("install", {"modelId": "alpha"})["taskId"]
    first.wait_for(lambda: part_bytes(home, "alpha") > 1_100_000, what="a partial download")
    first.kill()
    began = time.monotonic()
    second.wait_for(
        lambda: second.call("getTask", {"taskId": task_id})["state"] == "downloading",
        timeout=3,
        what="the takeover",
    )
    assert time.monotonic() - began < 3
    models.bytes_per_second = None
    assert second.wait_task(task_id, {"ready", "failed"})["state"] == "ready"
    assert_installed_exactly(home, "alpha", "1", MODELS["alpha"])
    assert models.storage_bytes("alpha") <= size_of("alpha") + IN_FLIGHT


def _write_lock(path: Path, pid: int, timestamp_ms: int, timeout_ms: int, model: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "pid": pid,
        "timestamp": timestamp_ms,
        "modelId": model,
        "version": "1",
        "timeout": timeout_ms,
    }
    path.write_text(json.dumps(info))


def test_lock_files_of_a_dead_process_met_after_start_do_not_block(
    start_sidecar, models: RepoServer, home: Path
):
    sidecar = start_sidecar()
    sidecar.call("getInfo")  # started: the start-up cleaning is over
    dead = 2**22 + 12345
    now = int(time.time() * 1000)
    _write_lock(home / "in-progress-downloads" / "alpha@1.lock", dead, now, 3_600_000, "alpha")
    _write_lock(home / "temp" / "alpha@1@w.bin.part.lock", dead, now, 3_600_000, "alpha")
    began = time.monotonic()
    assert sidecar.install_and_wait("alpha", timeout=10)["state"] == "ready"
    assert time.monotonic() - began < 3
    assert lock_files(home) == []


def test_a_held_lock_not_refreshed_past_its_timeout_is_broken(
    start_sidecar, models: RepoServer, home: Path
):
    """A live holder that hangs: its OS lock stays, its timestamp gets old. The task waits
    (saying for whom) until the lock's timeout has passed, then takes over."""
    path = home / "in-progress-downloads" / "alpha@1.lock"
    _write_lock(path, os.getpid(), int(time.time() * 1000), 2_000, "alpha")
    with open(path, "a+b") as handle:
        portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
        sidecar = start_sidecar()
        task_id = sidecar.call("install", {"modelId": "alpha"})["taskId"]
        sidecar.wait_for(
            lambda: str(os.getpid()) in (task_of(sidecar, "alpha")["waitingFor"] or ""),
            what="waitingFor naming the hung holder",
        )
        # Bounded by the lock's 2 s timeout, far below the default lock timeout: no clock.
        task = sidecar.wait_task(task_id, {"ready", "failed"}, timeout=10)
        assert task["state"] == "ready", task
    assert_installed_exactly(home, "alpha", "1", MODELS["alpha"])


def test_a_held_lock_with_unreadable_contents_does_not_block_forever(
    start_sidecar, models: RepoServer, home: Path
):
    """A holder that hung between truncating its lock file and writing it (or a lock in a
    format this version cannot read): nothing says who or until when, so the file's age
    against our own --lock-timeout decides."""
    path = home / "in-progress-downloads" / "alpha@1.lock"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    old = time.time() - 60
    os.utime(path, (old, old))
    with open(path, "a+b") as handle:
        portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
        sidecar = start_sidecar(args=["--lock-timeout", "2"])
        task = sidecar.install_and_wait("alpha", timeout=10)
        assert task["state"] == "ready", task


def test_a_hung_holder_that_wakes_up_after_a_takeover_corrupts_nothing(
    start_sidecar, models: RepoServer, home: Path
):
    """SIGSTOP the sidecar downloading (and its worker: a machine that hangs); another
    takes over once the lock is stale; then the first wakes up mid-way through the
    second's download. Whatever each of them does next, models/ ends with the exact
    bytes."""
    models.bytes_per_second = 1_500_000
    args = ["--lock-timeout", "2"]
    first = start_sidecar(args=args)
    first_id = first.call("install", {"modelId": "alpha"})["taskId"]
    first.wait_for(lambda: part_bytes(home, "alpha") > 1_100_000, what="a partial download")
    info = first.call("getInfo")
    frozen = [info["pid"], info["workerPid"]]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        second = start_sidecar(args=args)
        second_id = second.call("install", {"modelId": "alpha"})["taskId"]
        second.wait_for(
            lambda: task_of(second, "alpha")["state"] == "downloading",
            timeout=10,
            what="the takeover of a stale lock",
        )
        time.sleep(0.3)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    models.bytes_per_second = None
    results = [
        first.wait_task(first_id, {"ready", "failed"}, 30),
        second.wait_task(second_id, {"ready", "failed"}, 30),
    ]
    # The model is installed: neither client may be told its install failed.
    assert [(r["state"], r["error"]) for r in results] == [("ready", None), ("ready", None)]
    assert_installed_exactly(home, "alpha", "1", MODELS["alpha"])
    assert second.call("verify", {"modelId": "alpha"})["ok"] is True
    registry_agrees_with_disk(home)
