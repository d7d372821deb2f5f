"""The start-up sweep of temp files: a kill's leftovers go, a live writer's stay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sidecar.store.fsutil import NO_WRITE_TAKES, atomic_write_bytes, sweep_temp_files


def test_a_live_writers_temp_file_is_kept_and_a_dead_ones_removed(tmp_path: Path) -> None:
    if os.name == "nt":
        pytest.skip("Windows goes by age alone")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        in_progress = tmp_path / f".registry.json.{live.pid}-ab_c12.tmp"
        left_by_kill = tmp_path / f".registry.json.{dead.stdout.strip()}-xy9z.tmp"
        unnamed = tmp_path / ".registry.json.k1ll3d.tmp"  # written before pids were recorded
        ancient = tmp_path / f".tasks.json.{live.pid}-old.tmp"
        for path in (in_progress, left_by_kill, unnamed, ancient):
            path.write_bytes(b'{"half": ')
        long_ago = time.time() - NO_WRITE_TAKES - 60
        os.utime(ancient, (long_ago, long_ago))  # its pid may be someone else's by now
        removed = sweep_temp_files(tmp_path, ".*.tmp")
        assert sorted(removed) == sorted([left_by_kill, unnamed, ancient])
        assert in_progress.exists()
    finally:
        live.kill()
        live.wait()


def test_atomic_writes_name_their_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spying_replace(source: str, target: Path, **dir_fds: int | None) -> None:
        seen.append(Path(source).name)
        real_replace(source, target, **dir_fds)

    monkeypatch.setattr(os, "replace", spying_replace)
    atomic_write_bytes(tmp_path / "registry.json", b"{}")
    assert len(seen) == 1 and seen[0].startswith(f".registry.json.{os.getpid()}-"), seen
    assert sweep_temp_files(tmp_path, ".*.tmp") == []
