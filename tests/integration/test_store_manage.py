"""The store as users manage it (issue 14): disk usage, prune, quota with pins and
leases, damaged versions and their repair. The real sidecar over real pipes against
the loopback repository."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.support.repo_helpers import run_cli
from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError, Sidecar
from tests.support.store_usage import store_bytes_on_disk

KB = 1000


def blob(size: int) -> bytes:
    return os.urandom(size)


def file_gets(repo: RepoServer, since: int = 0) -> list[str]:
    return [path for method, path, _ in repo.requests[since:] if path.startswith("/storage/")]


def changed(sidecar: Sidecar) -> list[dict[str, object]]:
    return [n["params"] for n in sidecar.notifications if n["method"] == "models.changed"]


def test_quota_evicts_the_lru_unpinned_version_and_spares_a_leased_one(
    start_sidecar, repo: RepoServer, home: Path
):
    for model_id in ("a", "b", "c", "d", "e"):
        repo.add(model_id, "1.0.0", {"weights.bin": blob(400 * KB)})
    sidecar = start_sidecar(args=["--max-store-bytes", str(1300 * KB)])
    for model_id in ("a", "b", "c"):
        assert sidecar.install_and_wait(model_id)["state"] == "ready"
    # a is the least recently used, but leased; then b, then c.
    leased = sidecar.call("getModelPath", {"modelId": "a", "lease": True})
    assert leased["leaseId"]
    sidecar.call("getModelPath", {"modelId": "b"})
    sidecar.call("getModelPath", {"modelId": "c"})

    assert sidecar.install_and_wait("d")["state"] == "ready"
    evicted = [c for c in changed(sidecar) if c.get("reason") == "evicted"]
    assert evicted == [
        {"modelId": "b", "version": "1.0.0", "state": "removed", "reason": "evicted"}
    ]
    assert not (home / "models" / "b").exists()
    assert (Path(leased["path"]) / "weights.bin").stat().st_size == 400 * KB
    assert store_bytes_on_disk(home) <= 1300 * KB

    # Released, a goes next; pinned, c stays whatever its age.
    assert sidecar.call("releaseModel", {"leaseId": leased["leaseId"]})["released"] is True
    assert sidecar.call("releaseModel", {"leaseId": leased["leaseId"]})["released"] is False
    assert sidecar.call("pin", {"modelId": "c"}) == {
        "modelId": "c",
        "version": "1.0.0",
        "pinned": True,
    }
    assert sidecar.install_and_wait("e")["state"] == "ready"
    assert [c["modelId"] for c in changed(sidecar) if c.get("reason") == "evicted"] == ["b", "a"]

    # Nothing evictable left (c pinned, d and e leased): refused before any byte moves.
    for model_id in ("d", "e"):
        sidecar.call("getModelPath", {"modelId": model_id, "lease": True})
    repo.add("f", "1.0.0", {"weights.bin": blob(400 * KB)})
    before = len(repo.requests)
    with pytest.raises(RpcError) as refused:
        sidecar.call("install", {"modelId": "f"})
    assert refused.value.code == 1006
    data = refused.value.data
    assert (data["code"], data["reason"], data["maxStoreBytes"]) == (
        "INSUFFICIENT_DISK_SPACE", "quota", 1300 * KB,
    )  # fmt: skip
    assert "c@1.0.0 (pinned)" in refused.value.message
    assert file_gets(repo, before) == []
    assert sorted(p.name for p in (home / "models").iterdir()) == ["c", "d", "e"]

    # The quota changes at run time; leases end with the client (a restart here).
    assert sidecar.call("setLimits", {"maxStoreBytes": 0})["maxStoreBytes"] == 0
    sidecar.stop()
    again = start_sidecar(args=["--max-store-bytes", str(1300 * KB)])
    assert again.install_and_wait("f")["state"] == "ready"
    assert {c["modelId"] for c in changed(again) if c.get("reason") == "evicted"} == {"d"}


def test_prune_leaves_alone_a_part_another_process_is_writing(
    start_sidecar, repo: RepoServer, home: Path
):
    repo.add("slow", "1.0.0", {"weights.bin": blob(600 * KB)})
    # First, so it does not take the writer's task from tasks.json as one of its own.
    pruner = start_sidecar()
    writer = start_sidecar()  # another sidecar process on the same home
    repo.bytes_per_second = 150_000
    task = writer.call("install", {"modelId": "slow"})
    parts = home / "temp"
    writer.wait_for(lambda: any(p.stat().st_size > 0 for p in parts.glob("slow@*.part")))
    part = next(parts.glob("slow@*.part"))
    # Old as it may be (its mtime is set back; the writer touches it again as it writes).
    old = time.time() - 30 * 86400
    os.utime(part, (old, old))

    result = pruner.call("prune", {"olderThanDays": 0})
    assert [i for i in result["items"] if i["kind"] == "part"] == []
    assert any(part.name in kept and "being written" in kept for kept in result["kept"])
    assert part.exists()
    usage = pruner.call("diskUsage")
    assert [(x["kind"], x["modelId"], x["busy"]) for x in usage["leftovers"]] == [
        ("part", "slow", True)
    ]
    repo.bytes_per_second = None
    done = writer.wait_task(task["taskId"], {"ready", "failed"})
    assert done["state"] == "ready", done
    assert writer.call("verify", {"modelId": "slow"})["ok"] is True


def test_prune_dry_run_lists_then_prune_removes_old_versions_parts_and_leftovers(
    start_sidecar, repo: RepoServer, home: Path
):
    shared = blob(100 * KB)
    repo.add("m", "1.0.0", {"shared.bin": shared, "own.bin": blob(200 * KB)})
    repo.add("m", "2.0.0", {"shared.bin": shared, "own.bin": blob(300 * KB)})
    repo.add("m", "3.0.0", {"shared.bin": shared, "own.bin": blob(50 * KB)})
    sidecar = start_sidecar()
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        assert sidecar.install_and_wait("m", version=version)["state"] == "ready"
    sidecar.call("pin", {"modelId": "m", "version": "2.0.0"})
    temp = home / "temp"
    old = time.time() - 10 * 86400
    stale = temp / "gone@1.0.0@weights.bin.part"  # its writer died long ago
    stale.write_bytes(b"s" * 5000)
    (temp / "gone@1.0.0@weights.bin.part.lock").write_text(
        json.dumps(
            {
                "pid": 2**22 + 7,
                "timestamp": 0,
                "modelId": "gone",
                "version": "1.0.0",
                "timeout": 1000,
            }
        )
    )
    fresh = temp / "new@1.0.0@weights.bin.part"  # recent: kept at 7 days
    fresh.write_bytes(b"f" * 3000)
    staging = temp / "cut@1.0.0.staging"
    (staging / "sub").mkdir(parents=True)
    (staging / "sub" / "x.bin").write_bytes(b"x" * 7000)
    for path in (stale, staging / "sub" / "x.bin", staging):
        os.utime(path, (old, old))

    dry = sidecar.call("prune", {"dryRun": True})
    listed = {(i["kind"], i["name"]): i["sizeBytes"] for i in dry["items"]}
    assert listed == {
        ("version", "m@1.0.0"): 200 * KB,  # shared.bin stays: 2.0.0 and 3.0.0 link it
        ("part", stale.name): 5000,
        ("staging", staging.name): 7000,
    }
    assert dry["freedBytes"] == 200 * KB + 12000
    assert "m@2.0.0: pinned" in dry["kept"]
    assert stale.exists() and staging.exists() and (home / "models/m/1.0.0").exists()

    before = store_bytes_on_disk(home)
    done = sidecar.call("prune", {})
    assert {(i["kind"], i["name"]) for i in done["items"]} == set(listed)
    assert before - store_bytes_on_disk(home) == done["freedBytes"] == dry["freedBytes"]
    assert not stale.exists() and not staging.exists() and fresh.exists()
    assert sorted(p.name for p in (home / "models/m").iterdir()) == ["2.0.0", "3.0.0"]
    assert {"modelId": "m", "version": "1.0.0", "state": "removed", "reason": "pruned"} in (
        changed(sidecar)
    )
    # The newest damaged: the newest that works is kept too, pinned or not.
    (home / "models/m/3.0.0/own.bin").write_bytes(b"\0" * (50 * KB))
    assert sidecar.call("verify", {"modelId": "m"})["ok"] is False
    sidecar.call("unpin", {"modelId": "m", "version": "2.0.0"})
    assert sidecar.call("prune", {"dryRun": True})["items"] == []


def test_disk_usage_matches_the_bytes_on_disk_and_du_fits_80_columns(
    start_sidecar, repo: RepoServer, home: Path
):
    shared = blob(120 * KB)
    long_id = "speech-recognition-large-multilingual-distilled"
    repo.add(long_id, "1.0.0", {"shared.bin": shared, "a.bin": blob(70 * KB)})
    repo.add(long_id, "2.0.0", {"shared.bin": shared, "b.bin": blob(90 * KB)})
    sidecar = start_sidecar()
    for version in ("1.0.0", "2.0.0"):
        assert sidecar.install_and_wait(long_id, version=version)["state"] == "ready"
    (home / "temp" / f"{long_id}@3.0.0@c.bin.part").write_bytes(b"p" * 4321)
    sidecar.call("getModelPath", {"modelId": long_id, "version": "1.0.0"})

    usage = sidecar.call("diskUsage")
    assert usage["totalBytes"] == store_bytes_on_disk(home)
    assert usage["modelsBytes"] == 120 * KB + 70 * KB + 90 * KB
    assert usage["leftoverBytes"] == 4321
    rows = {v["version"]: v for v in usage["versions"]}
    assert (rows["1.0.0"]["sizeBytes"], rows["1.0.0"]["sharedBytes"]) == (190 * KB, 120 * KB)
    assert (rows["2.0.0"]["sizeBytes"], rows["2.0.0"]["sharedBytes"]) == (210 * KB, 120 * KB)
    assert rows["1.0.0"]["lastUsed"] and rows["2.0.0"]["lastUsed"] is None
    assert usage["freeBytes"] > 0
    sidecar.stop()

    du = run_cli("du", home=home, repository=repo.url)
    assert du.returncode == 0, du.stderr
    lines = du.stdout.splitlines()
    assert max(map(len, lines)) <= 80, du.stdout
    assert long_id + "@1.0.0" in lines  # whole, on a line of its own
    assert "part" in du.stdout and "free on the volume" in du.stdout
    listing = run_cli("list", home=home, repository=repo.url)
    assert listing.returncode == 0, listing.stderr
    assert max(map(len, listing.stdout.splitlines())) <= 80, listing.stdout
    assert long_id in listing.stdout.splitlines()
    assert "SIZE" in listing.stdout and "LAST USED" in listing.stdout


def test_damaged_version_is_refused_then_repair_fetches_only_the_bad_file(
    start_sidecar, repo: RepoServer, home: Path
):
    files = {"a.bin": blob(150 * KB), "b.bin": blob(150 * KB), "conf/c.json": b'{"n": 1}'}
    repo.add("m", "1.0.0", files)
    sidecar = start_sidecar()
    assert sidecar.install_and_wait("m")["state"] == "ready"
    folder = home / "models/m/1.0.0"
    (folder / "b.bin").write_bytes(b"\0" * (150 * KB))  # same size, other bytes

    verified = sidecar.call("verify", {"modelId": "m"})
    assert verified["problems"] == [{"path": "b.bin", "problem": "checksum_mismatch"}]
    assert {"modelId": "m", "version": "1.0.0", "state": "damaged"} in (changed(sidecar))
    sidecar.stop()

    sidecar = start_sidecar()  # persisted in the registry, not undone by the size check
    with pytest.raises(RpcError) as refused:
        sidecar.call("getModelPath", {"modelId": "m"})
    assert (refused.value.code, refused.value.data["reason"]) == (1001, "damaged")
    with pytest.raises(RpcError) as refused:
        sidecar.call("install", {"modelId": "m"})
    assert refused.value.data["reason"] == "damaged"
    assert "repair" in refused.value.message

    before = len(repo.requests)
    assert sidecar.install_and_wait("m", repair=True)["state"] == "ready"
    assert file_gets(repo, before) == ["/storage/models/m/1.0.0/b.bin"]
    assert {p: (folder / p).read_bytes() for p in files} == files
    assert sidecar.call("getModelPath", {"modelId": "m"})["path"] == str(folder)
    assert sidecar.call("verify", {"modelId": "m"})["ok"] is True


def test_cli_pin_prune_and_install_repair(repo: RepoServer, home: Path):
    repo.add("m", "1.0.0", {"w.bin": blob(50 * KB)})
    repo.add("m", "2.0.0", {"w.bin": blob(60 * KB)})
    for ref in ("m@1.0.0", "m@2.0.0"):
        assert run_cli("install", ref, home=home, repository=repo.url).returncode == 0
    pinned = run_cli("pin", "m@1.0.0", home=home, repository=repo.url)
    assert (pinned.returncode, pinned.stdout.strip()) == (0, "pinned m@1.0.0")
    dry = run_cli("prune", "--dry-run", home=home, repository=repo.url)
    assert "nothing to prune" in dry.stdout and "kept m@1.0.0: pinned" in dry.stdout
    run_cli("unpin", "m@1.0.0", home=home, repository=repo.url)
    pruned = run_cli("prune", home=home, repository=repo.url)
    assert "version  m@1.0.0" in pruned.stdout and "freed 49 KiB" in pruned.stdout
    (home / "models/m/2.0.0/w.bin").write_bytes(b"\0" * (60 * KB))
    assert run_cli("verify", "m", home=home, repository=repo.url).returncode == 1
    refused = run_cli("install", "m", home=home, repository=repo.url)
    assert refused.returncode == 1 and "install --repair m@2.0.0" in refused.stderr
    repaired = run_cli("install", "--repair", "m", home=home, repository=repo.url)
    assert repaired.returncode == 0, repaired.stderr
    assert run_cli("verify", "m", home=home, repository=repo.url).returncode == 0
