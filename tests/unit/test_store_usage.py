"""The store's pieces without a sidecar: last-used times saved in batches and merged
between processes, what removing versions frees when files are shared, and whose lock
counts as held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sidecar.core.lastused import LastUsed
from sidecar.core.leases import Leases
from sidecar.core.usage import freed_by, lock_held, scan_leftovers, scan_versions
from sidecar.store.layout import HomeLayout


def make_home(tmp_path: Path) -> HomeLayout:
    layout = HomeLayout(tmp_path / "home")
    layout.create()
    return layout


def test_last_used_writes_only_on_flush_and_merges_two_processes(tmp_path: Path):
    layout = make_home(tmp_path)
    one, two = LastUsed(layout), LastUsed(layout)
    one.touch("a", "1")
    assert not (layout.root / "last-used.json").exists()  # touch is memory only
    one.flush()
    two.touch("b", "1")
    two.flush()  # keeps a@1 that the other process wrote
    saved = json.loads((layout.root / "last-used.json").read_text())
    assert set(saved) == {"a", "b"}
    one.forget("a", "1")
    one.flush()
    fresh = LastUsed(layout)
    fresh.load()
    assert fresh.get("a", "1") is None and fresh.get("b", "1") is not None


def test_freed_bytes_count_a_shared_file_only_when_all_its_versions_go(tmp_path: Path):
    layout = make_home(tmp_path)
    for version in ("1", "2"):
        (layout.model_dir("m", version)).mkdir(parents=True)
    (layout.model_dir("m", "1") / "shared.bin").write_bytes(b"s" * 100)
    os.link(layout.model_dir("m", "1") / "shared.bin", layout.model_dir("m", "2") / "shared.bin")
    (layout.model_dir("m", "1") / "own.bin").write_bytes(b"o" * 10)
    (layout.model_dir("m", "2") / "own.bin").write_bytes(b"p" * 20)
    versions = scan_versions(layout)
    assert freed_by(versions, {("m", "1")}) == 10
    assert freed_by(versions, {("m", "2")}) == 20
    assert freed_by(versions, {("m", "1"), ("m", "2")}) == 130


def test_a_lock_is_held_only_by_a_live_holder(tmp_path: Path):
    layout = make_home(tmp_path)
    part = layout.temp / "m@1@w.bin.part"
    part.write_bytes(b"x" * 10)
    lock_path = part.with_name(part.name + ".lock")
    assert not lock_held(lock_path)  # no lock file at all
    dead = {"pid": 2**22 + 7, "timestamp": 0, "modelId": "m", "version": "1", "timeout": 9}
    lock_path.write_text(json.dumps(dead))
    assert not lock_held(lock_path)  # a file its dead writer left, locked by nobody
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(lock_path)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        assert lock_held(lock_path)
        [item] = scan_leftovers(layout, set())
        assert (item.kind, item.busy, item.size) == ("part", True, 10)
    finally:
        holder.communicate(b"", timeout=10)
    assert not lock_held(lock_path)


_HOLD = """
import sys
from pathlib import Path
from sidecar.store.locks import OwnedLock
lock = OwnedLock(Path(sys.argv[1]), "m", "1", 60_000)
assert lock.try_acquire()
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


def test_leases_end_with_their_client():
    leases = Leases()
    first = leases.grant("stdio", "a", "1")
    leases.grant("socket-7", "b", "1")
    assert leases.in_use() == {("a", "1"), ("b", "1")}
    assert [lease.lease_id for lease in leases.drop_client("stdio")] == [first]
    assert leases.in_use() == {("b", "1")}
    assert leases.release(first) is None
