"""The store quota on downloads `install` does not start: a plain URL's (installUrl),
whose size its server states, and the tasks a restart resumes from tasks.json. Each
evicts the least recently used versions that may go, or fails with
INSUFFICIENT_DISK_SPACE (quota) and evicts nothing. The real sidecar over real pipes
against the loopback repository."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.faults import Fault, _headers, _write
from tests.support.repo_server import RepoHandler, RepoServer
from tests.support.sidecar_proc import Sidecar
from tests.support.store_usage import store_bytes_on_disk

KB = 1000
MB = 1000 * KB
QUOTA_ARG = "--max-store-bytes"


def blob(size: int) -> bytes:
    return os.urandom(size)


def evicted(sidecar: Sidecar) -> list[str]:
    return [
        n["params"]["modelId"]
        for n in sidecar.notifications
        if n["method"] == "models.changed" and n["params"].get("reason") == "evicted"
    ]


def parts_of(home: Path, model_id: str) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (home / "temp").glob(f"{model_id}@*.part")}


def recorded_bytes(home: Path, model_id: str) -> int:
    """Bytes the part records vouch for (a segmented part is pre-sized)."""
    total = 0
    for record in (home / "temp").glob(f"{model_id}@*.part.json"):
        done = json.loads(record.read_text()).get("done")
        part = record.with_name(record.name[: -len(".json")])
        total += sum(b - a for a, b in done) if done else part.stat().st_size
    return total


def installed(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "models").iterdir())


def with_two_installed(start_sidecar, repo: RepoServer, **kwargs) -> Sidecar:
    """a and b installed (400 KB each), a the least recently used."""
    for model_id in ("a", "b"):
        repo.add(model_id, "1.0.0", {"weights.bin": blob(400 * KB)})
    sidecar = start_sidecar(**kwargs)
    for model_id in ("a", "b"):
        assert sidecar.install_and_wait(model_id)["state"] == "ready"
    sidecar.call("getModelPath", {"modelId": "b"})
    return sidecar


def assert_quota_failure(task: dict, model_id: str) -> None:
    assert task["state"] == "failed", task
    error = task["error"]
    assert error["code"] == "INSUFFICIENT_DISK_SPACE", error
    assert error["reason"] == "quota", error  # not a full disk: the app says which
    message = error["message"]
    # The user's words: the model, the sizes, what is kept and what to configure.
    for words in (model_id, "quota", "MiB", "--max-store-bytes", "a@1.0.0 (pinned)"):
        assert words in message, message
    assert "/temp/" not in message and ".part" not in message, message


# --- installUrl ---------------------------------------------------------------------


def test_install_url_whose_server_states_its_size_evicts_like_install(
    start_sidecar, repo: RepoServer, home: Path
):
    sidecar = with_two_installed(start_sidecar, repo, args=[QUOTA_ARG, str(1100 * KB)])
    repo.add("host", "1", {"big.bin": blob(600 * KB)})
    started = sidecar.call("installUrl", {"url": f"{repo.url}/storage/models/host/1/big.bin"})
    task = sidecar.wait_task(started["taskId"], {"ready", "failed"})
    assert task["state"] == "ready", task
    assert evicted(sidecar) == ["a"]
    assert installed(home) == ["b", "big"]
    assert store_bytes_on_disk(home) <= 1100 * KB


def test_install_url_past_the_quota_fails_typed_and_leaves_no_part(
    start_sidecar, repo: RepoServer, home: Path
):
    sidecar = with_two_installed(start_sidecar, repo, args=[QUOTA_ARG, str(1100 * KB)])
    for model_id in ("a", "b"):
        sidecar.call("pin", {"modelId": model_id})
    repo.add("host", "1", {"big.bin": blob(600 * KB)})
    repo.bytes_per_second = 300_000  # refused while it downloads, its size just known
    started = sidecar.call("installUrl", {"url": f"{repo.url}/storage/models/host/1/big.bin"})
    task = sidecar.wait_task(started["taskId"], {"ready", "failed"})
    assert_quota_failure(task, "big")
    assert evicted(sidecar) == []
    assert installed(home) == ["a", "b"]
    assert parts_of(home, "big") == {}  # what arrived before the refusal is not kept
    assert "what it downloaded so far was removed" in task["error"]["message"]
    assert store_bytes_on_disk(home) <= 1100 * KB
    for model_id in ("a", "b"):
        assert sidecar.call("verify", {"modelId": model_id})["ok"] is True


class Chunked(Fault):
    """The whole file, chunked: no Content-Length, its size known once it arrived."""

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        data = handler.repo.file_data(path)
        if data is None:
            return False
        headers = {"Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"}
        _headers(handler, 200, headers)
        _write(handler, path, b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        return True


def test_install_url_of_a_size_known_only_at_its_end_is_checked_then(
    start_sidecar, repo: RepoServer, home: Path
):
    sidecar = with_two_installed(start_sidecar, repo, args=[QUOTA_ARG, str(1100 * KB)])
    repo.add("host", "1", {"big.bin": blob(600 * KB)})
    repo.fault = Chunked(times=None, match="/storage/models/host/")
    started = sidecar.call("installUrl", {"url": f"{repo.url}/storage/models/host/1/big.bin"})
    task = sidecar.wait_task(started["taskId"], {"ready", "failed"})
    assert task["state"] == "ready", task
    assert task["bytesTotal"] == 600 * KB
    assert evicted(sidecar) == ["a"]
    assert store_bytes_on_disk(home) <= 1100 * KB


# --- tasks resumed at start-up ----------------------------------------------------------


def interrupted(
    start_sidecar, repo: RepoServer, home: Path, size: int, past: int, rate: int, pin: bool = False
) -> str:
    """a and b installed (pinned if ``pin``), then `slow` (``size`` bytes) cut off by a
    kill once ``past`` bytes of it are on disk: its task is in tasks.json, resumed at
    the next start."""
    first = with_two_installed(start_sidecar, repo)
    for model_id in ("a", "b") if pin else ():
        first.call("pin", {"modelId": model_id})
    repo.add("slow", "1.0.0", {"weights.bin": blob(size)})
    repo.bytes_per_second = rate  # per connection
    task_id = first.call("install", {"modelId": "slow"})["taskId"]
    first.wait_for(lambda: recorded_bytes(home, "slow") > past, timeout=30, what="a part")
    first.kill()
    repo.bytes_per_second = None
    return task_id


def test_a_task_resumed_at_start_up_evicts_counting_its_part_once(
    start_sidecar, repo: RepoServer, home: Path
):
    size = 40 * 1024 * 1024  # segmented: its part is pre-sized, all of it counted already
    task_id = interrupted(start_sidecar, repo, home, size, past=2 * MB, rate=1_000_000)
    assert sum(parts_of(home, "slow").values()) == size
    quota = size + 400 * KB + 100 * KB  # room for slow and one of a, b
    second = start_sidecar(args=[QUOTA_ARG, str(quota)])
    task = second.wait_task(task_id, {"ready", "failed"})
    assert task["state"] == "ready", task
    assert evicted(second) == ["a"]  # b stays: what is on disk is not counted twice
    assert installed(home) == ["b", "slow"]
    assert store_bytes_on_disk(home) <= quota


def test_a_task_resumed_at_start_up_past_the_quota_fails_and_keeps_its_part(
    start_sidecar, repo: RepoServer, home: Path
):
    task_id = interrupted(
        start_sidecar, repo, home, 600 * KB, past=100 * KB, rate=150_000, pin=True
    )
    parts = parts_of(home, "slow")
    assert 0 < sum(parts.values()) < 600 * KB
    first_gets = len(repo.file_requests("slow"))

    second = start_sidecar(args=[QUOTA_ARG, str(1100 * KB)])
    task = second.wait_task(task_id, {"ready", "failed"})
    assert_quota_failure(task, "slow")
    assert evicted(second) == []
    assert parts_of(home, "slow") == parts  # kept for a resume once there is room
    assert "it downloaded so far are kept: resume it" in task["error"]["message"]
    assert len(repo.file_requests("slow")) == first_gets  # not a byte more fetched

    # Room made (a unpinned): the same task resumes from its part and evicts a.
    second.call("unpin", {"modelId": "a"})
    second.call("resume", {"taskId": task_id})
    task = second.wait_task(task_id, {"ready", "failed"})
    assert task["state"] == "ready", task
    assert evicted(second) == ["a"]
    assert installed(home) == ["b", "slow"]
    assert store_bytes_on_disk(home) <= 1100 * KB
