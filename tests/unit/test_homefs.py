"""sidecar.store.homefs: nothing under the home is reached through a link, state files are
read only when regular and bounded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.core.tasks import TaskStore
from sidecar.store.homefs import MAX_JSON_DEPTH, DamagedFile, HomeFS, UnsafeHomePath, loads_bounded
from sidecar.store.layout import HomeLayout
from sidecar.store.registry import Registry


@pytest.fixture
def fs(tmp_path: Path) -> HomeFS:
    (tmp_path / "home").mkdir()
    (tmp_path / "outside").mkdir()
    return HomeFS(tmp_path / "home")


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_writes_never_pass_a_linked_folder(fs: HomeFS, tmp_path: Path, depth: int):
    parts = ["a", "b", "c"][:depth]
    real = fs.root.joinpath(*parts[:-1])
    real.mkdir(parents=True, exist_ok=True)
    (real / parts[-1]).symlink_to(tmp_path / "outside", target_is_directory=True)
    target = fs.root.joinpath(*parts, "f.json")
    with pytest.raises(UnsafeHomePath) as raised:
        fs.atomic_write(target, b"{}")
    assert raised.value.to_data()["code"] == "HOME_UNAVAILABLE"
    with pytest.raises(UnsafeHomePath):
        fs.open_file(target, "a+b", create_parents=True)
    with pytest.raises(UnsafeHomePath):
        fs.makedirs(target.parent / "deeper")
    assert list((tmp_path / "outside").iterdir()) == []


def test_a_linked_leaf_is_refused_and_dropped_without_touching_its_target(
    fs: HomeFS, tmp_path: Path
):
    victim = tmp_path / "outside" / "v"
    victim.write_bytes(b"keep")
    (fs.root / "x.lock").symlink_to(victim)
    with pytest.raises(UnsafeHomePath):
        fs.open_file(fs.root / "x.lock", "a+b")
    with pytest.raises(DamagedFile):
        fs.read_bytes(fs.root / "x.lock")
    assert fs.drop_link(fs.root / "x.lock")
    assert victim.read_bytes() == b"keep"
    assert not fs.drop_link(fs.root / "x.lock")


def test_paths_outside_the_home_are_refused(fs: HomeFS, tmp_path: Path):
    for path in (tmp_path / "outside" / "f", fs.root / ".." / "outside" / "f", fs.root):
        with pytest.raises(UnsafeHomePath):
            fs.atomic_write(path, b"x")


def test_fifo_devices_folders_and_huge_files_are_damaged_not_read(fs: HomeFS):
    os.mkfifo(fs.root / "fifo")  # opening it for reading would wait for a writer forever
    (fs.root / "folder").mkdir()
    with (fs.root / "huge").open("wb") as handle:
        handle.truncate(1 << 40)
    for name in ("fifo", "folder", "huge"):
        with pytest.raises(DamagedFile):
            fs.read_bytes(fs.root / name)
    with pytest.raises(FileNotFoundError):
        fs.read_bytes(fs.root / "absent")


def test_set_aside_then_write_over_a_folder(fs: HomeFS):
    (fs.root / "registry.json").mkdir()
    fs.atomic_write(fs.root / "registry.json", b"{}")  # the folder in the way is set aside
    assert (fs.root / "registry.json").read_bytes() == b"{}"
    assert len(list(fs.root.glob("registry.json.damaged-*"))) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@given(json_values, st.integers(min_value=0, max_value=3 * MAX_JSON_DEPTH))
def test_nesting_is_bounded(value: object, wrap: int):
    for _ in range(wrap):
        value = [value]
    data = json.dumps(value).encode()
    if _depth(value) > MAX_JSON_DEPTH:
        with pytest.raises(DamagedFile):
            loads_bounded(data, "x")
    else:
        assert loads_bounded(data, "x") == value


@pytest.mark.parametrize("depth", [10_000, 1_000_000])
def test_nesting_past_the_parser_is_damaged_not_a_crash(depth: int):
    with pytest.raises(DamagedFile):
        loads_bounded(b"[" * depth + b"]" * depth, "x")


state_bytes = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 50_000).map(lambda n: b'{"models": ' * n + b"{}" + b"}" * n),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=state_bytes)
def test_any_registry_or_tasks_file_loads_or_is_set_aside(tmp_path: Path, data: bytes):
    home = tmp_path / f"h{abs(hash(data))}"
    layout = HomeLayout(home)
    layout.create()
    layout.registry.write_bytes(data)
    layout.tasks_file.write_bytes(data)
    registry = Registry(layout)
    registry.load()  # never raises
    assert registry.document.models == {} or isinstance(registry.document.models, dict)
    assert isinstance(TaskStore(layout).load(), list)
    json.loads(layout.registry.read_bytes())  # rewritten readable
