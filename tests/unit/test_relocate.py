"""resolve_home: the forwarding records a moved home leaves behind, followed at start."""

from __future__ import annotations

import json
from pathlib import Path

from sidecar.store.forwarding import current_home
from sidecar.store.relocate import FORWARD, INCOMING, finish_move, resolve_home


def _forward(old: Path, new: Path, method: str = "copy") -> None:
    old.mkdir(parents=True, exist_ok=True)
    (old / FORWARD).write_text(json.dumps({"to": str(new), "from": str(old), "method": method}))


def test_current_home_follows_records_without_finishing_the_move(tmp_path: Path) -> None:
    """For a process that opened the home before it moved: it reads, the owner writes."""
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    third.mkdir()
    _forward(first, second, "rename")
    (first / "registry.json").write_text("{}")
    _forward(second, third)
    assert current_home(first) == current_home(second) == current_home(third) == third
    assert sorted(p.name for p in first.iterdir()) == [FORWARD, "registry.json"]
    _forward(third, first)  # moved back later: the later record wins
    record = json.loads((third / FORWARD).read_text())
    (third / FORWARD).write_text(json.dumps({**record, "switchedAt": "9999"}))
    assert current_home(first) == first


def test_the_old_folders_lock_and_socket_are_dropped_not_moved(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    new.mkdir()
    (new / "engine.lock").write_text('{"pid": 2}')  # the owner's claim on the new home
    _forward(old, new, "rename")
    (old / "engine.lock").write_text('{"pid": 1}')
    (old / "engine.sock").write_bytes(b"")
    (old / "registry.json").write_text("{}")
    finish_move(old, json.loads((old / FORWARD).read_text()))
    assert [p.name for p in old.iterdir()] == [FORWARD]
    assert sorted(p.name for p in new.iterdir()) == ["engine.lock", "registry.json"]
    assert json.loads((new / "engine.lock").read_text()) == {"pid": 2}


def test_a_chain_of_moves_is_followed_and_each_old_copy_dropped(tmp_path: Path) -> None:
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    third.mkdir()
    _forward(first, second)
    (first / "registry.json").write_text("{}")  # a copy the kill left behind
    _forward(second, third)
    home, notes = resolve_home(first)
    assert home == third
    assert [p.name for p in first.iterdir()] == [FORWARD]
    assert len(notes) == 2 and str(third) in notes[-1]


def test_a_switched_rename_is_finished_from_either_side(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    new.mkdir()
    (new / INCOMING).write_text(json.dumps({"from": str(old)}))
    _forward(old, new, "rename")
    (old / "models").mkdir()
    (old / "registry.json").write_text("{}")
    home, _ = resolve_home(new)  # opened at the new place directly
    assert home == new
    assert sorted(p.name for p in new.iterdir()) == ["models", "registry.json"]
    assert [p.name for p in old.iterdir()] == [FORWARD]


def test_an_unfinished_copy_is_not_taken_for_the_home(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (new / INCOMING).write_text(json.dumps({"from": str(old)}))
    assert resolve_home(old) == (old, [])
    home, notes = resolve_home(new)
    assert home == new and "unfinished copy" in notes[0]


def test_a_loop_of_records_ends(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _forward(one, two)
    _forward(two, one)
    home, notes = resolve_home(one)
    assert home in (one, two) and "loop" in notes[-1]


def test_a_damaged_record_is_ignored(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / FORWARD).write_text("{not json")
    assert resolve_home(home) == (home, [])
    (home / FORWARD).write_text(json.dumps({"to": "relative/path"}))
    assert resolve_home(home) == (home, [])


def test_moved_there_and_back_the_later_switch_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _forward(first, second)  # the first move, long ago
    record = json.loads((first / FORWARD).read_text())
    (first / FORWARD).write_text(json.dumps({**record, "switchedAt": "2026-01-01T00:00:00"}))
    # Moved back, killed right after the switch: both folders hold a record.
    _forward(second, first)
    back = json.loads((second / FORWARD).read_text())
    (second / FORWARD).write_text(json.dumps({**back, "switchedAt": "2026-06-01T00:00:00"}))
    (second / "stale-copy.bin").write_bytes(b"x")
    (first / "registry.json").write_text("{}")
    for start in (first, second):
        assert resolve_home(start)[0] == first
    assert sorted(p.name for p in first.iterdir()) == ["registry.json"]
    assert [p.name for p in second.iterdir()] == [FORWARD]


def test_a_record_leading_nowhere_is_not_followed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _forward(home, tmp_path / "gone")
    home_after, notes = resolve_home(home)
    assert home_after == home and "gone" in notes[0]
