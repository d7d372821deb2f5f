"""A home on a small filesystem (a tmpfs with a size limit): a manifest that will not fit
is refused before anything starts, a disk that fills mid-way fails the task cleanly with
the same code, and nothing else in the home is damaged."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faults import (
    assert_installed_exactly,
    assert_nothing_installed,
    assert_part_is_prefix,
    parts_of,
    registry_agrees_with_disk,
)
from tests.support.repo_server import RepoServer, sha256
from tests.support.sidecar_proc import RpcError

SIZE_MB = 64  # room for a segmented download (32 MiB or more) and the margin
KEEP = {"keep.bin": os.urandom(300_000), "keep.txt": b"keep me\n"}


@pytest.fixture
def small_home(home: Path) -> Iterator[Path]:
    """``home`` as its own small tmpfs; skipped where mounting is not allowed."""
    if shutil.which("mount") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) to give the home a size-limited filesystem")
    home.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(home)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield home
    finally:
        for _ in range(20):
            done = subprocess.run(["umount", str(home)], capture_output=True, check=False)
            if done.returncode == 0:
                break
            time.sleep(0.25)
        else:
            subprocess.run(["umount", "-l", str(home)], check=False)


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def install_kept_model(start_sidecar, repo: RepoServer, home: Path):
    repo.add("keep", "1", KEEP)
    sidecar = start_sidecar(args=["--network-patience", "2"])
    assert sidecar.install_and_wait("keep")["state"] == "ready"
    return sidecar


def assert_home_undamaged(sidecar, home: Path) -> None:
    assert_installed_exactly(home, "keep", "1", KEEP)
    registry = registry_agrees_with_disk(home)
    assert "keep" in registry["models"]
    json.loads((home / "tasks.json").read_text())
    assert sidecar.call("verify", {"modelId": "keep"})["ok"] is True
    assert sidecar.call("getModelPath", {"modelId": "keep"})["version"] == "1"


def test_manifest_that_will_not_fit_starts_nothing(
    small_home: Path, start_sidecar, repo: RepoServer
):
    sidecar = install_kept_model(start_sidecar, repo, small_home)
    too_big = free_bytes(small_home) + 1_000_000
    stored = repo.add("big", "1", {"w.bin": b"w"})
    stored.manifest_overrides = {
        "files": [{"path": "w.bin", "size_bytes": too_big, "sha256": sha256(b"w")}]
    }
    try:
        task = sidecar.install_and_wait("big", timeout=10)
        assert task["state"] == "failed", task
        assert task["error"]["code"] == "INSUFFICIENT_DISK_SPACE"
        assert task["error"]["reason"] == "no_space", task["error"]
    except RpcError as exc:
        assert exc.data["code"] == "INSUFFICIENT_DISK_SPACE"
        assert exc.data["reason"] == "no_space", exc.data
    assert repo.file_requests("big") == []
    assert not parts_of(small_home, "big")
    assert_nothing_installed(small_home, "big")
    assert_home_undamaged(sidecar, small_home)


@pytest.mark.parametrize(
    ("size", "rate"),
    [(8_000_000, 2_000_000), (34 * 1024 * 1024, 4_000_000)],
    ids=["one-stream", "segmented"],
)
def test_disk_filling_up_mid_download_fails_cleanly(
    small_home: Path, start_sidecar, repo: RepoServer, size: int, rate: int
):
    sidecar = install_kept_model(start_sidecar, repo, small_home)
    data = os.urandom(size)
    repo.add("big", "1", {"w.bin": data, "small.txt": b"s" * 100})
    repo.bytes_per_second = rate
    task_id = sidecar.call("install", {"modelId": "big"})["taskId"]
    sidecar.wait_for(
        lambda: sum(p.stat().st_size for p in parts_of(small_home, "big").values()) > 1_000_000,
        what="a partial download",
    )
    filler = small_home / "filler.bin"  # another program fills the disk
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * (1 << 20))
            handle.flush()
    began = time.monotonic()
    task = sidecar.wait_task(task_id, {"ready", "failed"}, timeout=30)
    assert task["state"] == "failed", task
    assert task["error"]["code"] == "INSUFFICIENT_DISK_SPACE", task["error"]
    assert task["error"]["reason"] == "no_space", task["error"]  # not the quota
    # The partial download is freed (kept, it would keep the disk full), and said so.
    assert "was removed to free them" in task["error"]["message"], task["error"]
    assert time.monotonic() - began < 15
    assert_nothing_installed(small_home, "big")
    assert "w.bin" not in parts_of(small_home, "big")
    for path, part in parts_of(small_home, "big").items():
        assert_part_is_prefix(part, {"w.bin": data, "small.txt": b"s" * 100}[path])
    assert sidecar.call("getInfo")["pid"]  # the daemon lives on a full disk

    filler.unlink()  # space again: the home works, and installing again finishes
    assert_home_undamaged(sidecar, small_home)
    repo.bytes_per_second = None
    task = sidecar.install_and_wait("big", timeout=30)
    assert task["state"] == "ready", task
    assert_installed_exactly(small_home, "big", "1", {"w.bin": data, "small.txt": b"s" * 100})
    assert_home_undamaged(sidecar, small_home)


def test_full_disk_at_the_start_of_a_registry_write_keeps_the_registry(
    small_home: Path, start_sidecar, repo: RepoServer
):
    """Completely full: installing a tiny model cannot write its part or the registry; the
    old registry stays whole and the daemon answers."""
    sidecar = install_kept_model(start_sidecar, repo, small_home)
    before = (small_home / "registry.json").read_bytes()
    repo.add("tiny", "1", {"t.bin": b"t" * 10})
    filler = small_home / "filler.bin"
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * (1 << 16))
            handle.flush()
    try:
        task = sidecar.install_and_wait("tiny", timeout=20)
        assert task["state"] == "failed", task
        assert task["error"]["code"] == "INSUFFICIENT_DISK_SPACE", task["error"]
    except RpcError as exc:
        assert exc.data["code"] == "INSUFFICIENT_DISK_SPACE"
    assert (small_home / "registry.json").read_bytes() == before
    assert sidecar.call("getModelPath", {"modelId": "keep"})["version"] == "1"
    filler.unlink()
    assert_home_undamaged(sidecar, small_home)
