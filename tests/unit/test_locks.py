from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sidecar.store.locks import OwnedLock, clean_stale_lock_files, lock_is_stale, read_lock_info
from sidecar.wire_files import LockInfo


def make(path: Path, timeout_ms: int = 60_000) -> OwnedLock:
    return OwnedLock(path, "m", "1", timeout_ms)


def test_lock_is_exclusive_and_says_who_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "m-1.lock"
    first, second = make(path), make(path)
    assert first.try_acquire()
    assert not second.try_acquire()
    info = read_lock_info(path)
    assert info is not None and info.pid == os.getpid() and info.model_id == "m"
    first.release()
    assert not path.exists()
    assert second.try_acquire()
    second.release()


def test_a_lock_held_by_another_live_process_blocks(tmp_path: Path) -> None:
    path = tmp_path / "m-1.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys,time; from sidecar.store.locks import OwnedLock; "
         f"l=OwnedLock(__import__('pathlib').Path({str(path)!r}),'m','1',60000); "
         f"assert l.try_acquire(); print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        assert not make(path).try_acquire()
        holder.kill()
        holder.wait()
        # The OS released the dead holder's lock: taken at once, no timeout to wait out.
        taken = make(path)
        assert taken.try_acquire()
        taken.release()
    finally:
        holder.kill()
        if holder.stdout:
            holder.stdout.close()
        holder.wait()


def test_staleness() -> None:
    alive = LockInfo(pid=os.getpid(), timestamp=1_000, model_id="m", version="1", timeout=500)
    assert lock_is_stale(alive, now=2_000)
    assert not lock_is_stale(alive, now=1_200)
    dead = LockInfo(pid=2**22 + 12345, timestamp=1_000, model_id="m", version="1", timeout=10**9)
    assert lock_is_stale(dead, now=1_001)


def test_clean_removes_unheld_lock_files_only(tmp_path: Path) -> None:
    held = make(tmp_path / "held.lock")
    assert held.try_acquire()
    info = {"pid": 1, "timestamp": 0, "modelId": "m", "version": "1", "timeout": 1}
    (tmp_path / "orphan.lock").write_text(json.dumps(info))
    removed = clean_stale_lock_files(tmp_path)
    assert [p.name for p in removed] == ["orphan.lock"]
    assert (tmp_path / "held.lock").exists()
    held.release()
