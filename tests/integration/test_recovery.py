"""Crashes, restarts, pause/resume/cancel, damaged homes, and two processes on one home."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError

BIG = os.urandom(6_000_000)


def part_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in (home / "temp").glob("*.part"))


def test_kill_9_mid_download_resumes_by_range_on_restart(
    start_sidecar, repo: RepoServer, home: Path
):
    repo.add("big", "1", {"w.bin": BIG})
    repo.bytes_per_second = 3_000_000
    first = start_sidecar()
    task_id = first.call("install", {"modelId": "big"})["taskId"]
    first.wait_for(lambda: part_bytes(home) > 1_500_000, what="a partial download")
    first.kill()
    on_disk = part_bytes(home)
    assert 0 < on_disk < len(BIG)
    repo.bytes_per_second = None

    second = start_sidecar()  # resumes unfinished work by itself
    second.wait_for(lambda: second.call("listTasks")["tasks"], what="the resumed task")
    task = second.wait_task(task_id, {"ready", "failed"})
    assert task["state"] == "ready", task
    path = Path(second.call("getModelPath", {"modelId": "big"})["path"])
    assert (path / "w.bin").read_bytes() == BIG
    resumed = [r for r in repo.file_requests("big")][-1]
    assert resumed[2].get("Range") == f"bytes={on_disk}-"
    assert resumed[2].get("If-Range")
    # Only what was not on disk was fetched again (plus what the kill cut off in flight).
    assert repo.storage_bytes() - len(BIG) < 1_200_000


def test_a_changed_file_on_the_server_starts_over(start_sidecar, repo: RepoServer, home: Path):
    repo.add("big", "1", {"w.bin": BIG})
    repo.bytes_per_second = 3_000_000
    first = start_sidecar()
    first.call("install", {"modelId": "big"})
    first.wait_for(lambda: part_bytes(home) > 1_000_000, what="a partial download")
    first.kill()
    changed = os.urandom(len(BIG))
    repo.add("big", "1", {"w.bin": changed})  # same path, new bytes and ETag
    repo.bytes_per_second = None
    second = start_sidecar()
    task = second.wait_for(lambda: second.call("listTasks")["tasks"])[0]
    task = second.wait_task(task["taskId"], {"ready", "failed"})
    assert task["state"] == "ready", task
    path = Path(second.call("getModelPath", {"modelId": "big"})["path"])
    assert (path / "w.bin").read_bytes() == changed


def test_pause_resume_and_cancel(start_sidecar, repo: RepoServer, home: Path):
    repo.add("big", "1", {"w.bin": BIG})
    repo.bytes_per_second = 2_000_000
    sidecar = start_sidecar()
    task_id = sidecar.call("install", {"modelId": "big"})["taskId"]
    sidecar.wait_for(lambda: part_bytes(home) > 500_000, what="a partial download")
    assert sidecar.call("pause", {"taskId": task_id})["taskId"] == task_id
    paused = sidecar.wait_task(task_id, {"paused"})
    with pytest.raises(RpcError) as raised:
        sidecar.call("getModelPath", {"modelId": "big"})
    assert raised.value.data["reason"] == "paused"
    kept = part_bytes(home)
    assert kept > 0 and paused["bytesDone"] >= kept - 1_100_000
    time.sleep(0.3)
    assert part_bytes(home) == kept, "a paused task kept writing"

    sidecar.call("resume", {"taskId": task_id})
    sidecar.wait_for(lambda: part_bytes(home) > kept, what="progress after resume")
    requests = repo.file_requests("big")
    assert requests[-1][2]["Range"].startswith("bytes=")

    sidecar.call("cancel", {"taskId": task_id})
    assert sidecar.wait_task(task_id, {"cancelled"})["state"] == "cancelled"
    assert part_bytes(home) == 0
    with pytest.raises(RpcError) as raised:
        sidecar.call("resume", {"taskId": task_id})
    assert raised.value.data["code"] == "INVALID_STATE"
    with pytest.raises(RpcError) as raised:
        sidecar.call("pause", {"taskId": "nope"})
    assert raised.value.data["code"] == "TASK_NOT_FOUND"


def test_paused_task_stays_paused_across_a_restart(start_sidecar, repo: RepoServer, home: Path):
    repo.add("big", "1", {"w.bin": BIG})
    repo.bytes_per_second = 2_000_000
    first = start_sidecar()
    task_id = first.call("install", {"modelId": "big"})["taskId"]
    first.wait_for(lambda: part_bytes(home) > 300_000)
    first.call("pause", {"taskId": task_id})
    first.wait_task(task_id, {"paused"})
    first.stop()
    second = start_sidecar()
    assert second.call("getTask", {"taskId": task_id})["state"] == "paused"
    repo.bytes_per_second = None
    second.call("resume", {"taskId": task_id})
    assert second.wait_task(task_id, {"ready", "failed"})["state"] == "ready"


@pytest.mark.parametrize("damage", ["missing", "garbage", "wrong-shape"])
def test_registry_is_rebuilt_when_missing_or_corrupt(
    start_sidecar, repo: RepoServer, home: Path, damage
):
    repo.add("whisper-small", "1.0.0", {"m.bin": b"m" * 1000})
    first = start_sidecar()
    first.install_and_wait("whisper-small")
    first.stop()
    registry = home / "registry.json"
    if damage == "missing":
        registry.unlink()
    elif damage == "garbage":
        registry.write_bytes(b"\x00{not json")
    else:
        registry.write_text(json.dumps({"models": [1, 2, 3]}))
    second = start_sidecar()
    assert second.call("getModelPath", {"modelId": "whisper-small"})["version"] == "1.0.0"
    rebuilt = json.loads(registry.read_text())
    assert rebuilt["models"]["whisper-small"]["versions"]["1.0.0"]["state"] == "ready"
    assert repo.storage_bytes() == 1000


def test_deleted_or_truncated_file_marks_the_model_incomplete(
    start_sidecar, repo: RepoServer, home: Path
):
    repo.add("whisper-small", "1.0.0", {"m.bin": b"m" * 1000, "n.bin": b"n" * 10})
    repo.add("other", "1", {"o.bin": b"o" * 100})
    first = start_sidecar()
    first.install_and_wait("whisper-small")
    first.install_and_wait("other")
    first.stop()
    (home / "models" / "whisper-small" / "1.0.0" / "m.bin").unlink()
    (home / "models" / "other" / "1" / "o.bin").write_bytes(b"o" * 50)
    second = start_sidecar()
    for model_id in ("whisper-small", "other"):
        with pytest.raises(RpcError) as raised:
            second.call("getModelPath", {"modelId": model_id})
        assert raised.value.data["reason"] == "incomplete"
    # Installing again repairs it.
    assert second.install_and_wait("whisper-small")["state"] == "ready"
    assert second.call("verify", {"modelId": "whisper-small"})["ok"] is True


def test_verify_finds_flipped_bytes(start_sidecar, repo: RepoServer, home: Path):
    repo.add("whisper-small", "1.0.0", {"m.bin": b"m" * 1000})
    sidecar = start_sidecar()
    sidecar.install_and_wait("whisper-small")
    (home / "models" / "whisper-small" / "1.0.0" / "m.bin").write_bytes(b"M" * 1000)
    result = sidecar.call("verify", {"modelId": "whisper-small"})
    assert result["ok"] is False
    assert result["problems"] == [{"path": "m.bin", "problem": "checksum_mismatch"}]
    with pytest.raises(RpcError) as raised:
        sidecar.call("getModelPath", {"modelId": "whisper-small"})
    assert raised.value.data["reason"] == "damaged"  # issue 14: repaired with install --repair


def test_remove(start_sidecar, repo: RepoServer, home: Path):
    repo.add("whisper-small", "1.0.0", {"m.bin": b"m" * 1000})
    sidecar = start_sidecar()
    sidecar.install_and_wait("whisper-small")
    result = sidecar.call("remove", {"modelId": "whisper-small"})
    assert result == {"modelId": "whisper-small", "removed": ["1.0.0"]}
    assert not (home / "models" / "whisper-small").exists()
    with pytest.raises(RpcError) as raised:
        sidecar.call("getModelPath", {"modelId": "whisper-small"})
    assert raised.value.data["reason"] == "not_installed"


def test_two_processes_on_one_home_download_once(start_sidecar, repo: RepoServer, home: Path):
    repo.add("big", "1", {"w.bin": BIG})
    repo.bytes_per_second = 6_000_000
    one, two = start_sidecar(), start_sidecar()
    first = one.call("install", {"modelId": "big"})
    second = two.call("install", {"modelId": "big"})
    results = [
        one.wait_task(first["taskId"], {"ready", "failed"}),
        two.wait_task(second["taskId"], {"ready", "failed"}),
    ]
    assert [r["state"] for r in results] == ["ready", "ready"]
    assert repo.storage_bytes() == len(BIG)
    for sidecar in (one, two):
        assert sidecar.call("getModelPath", {"modelId": "big"})["version"] == "1"
    assert list((home / "in-progress-downloads").iterdir()) == []


def test_lock_from_a_dead_process_does_not_block(start_sidecar, repo: RepoServer, home: Path):
    repo.add("whisper-small", "1.0.0", {"m.bin": b"m" * 1000})
    locks = home / "in-progress-downloads"
    locks.mkdir(parents=True)
    stale = {
        "pid": 999_999_9,
        "timestamp": 1,
        "modelId": "whisper-small",
        "version": "1.0.0",
        "timeout": 1000,
    }
    (locks / "whisper-small-1.0.0.lock").write_text(json.dumps(stale))
    sidecar = start_sidecar()
    assert sidecar.install_and_wait("whisper-small", timeout=10)["state"] == "ready"
