"""A damaged home never stops the daemon: state files that are folders, FIFOs, links to
devices, huge or nested past any parser; folders that are files; odd folder names.
What cannot be read is set aside (``<name>.damaged-<time>``) and rebuilt."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.repo_server import RepoServer

STATE_FILES = ["registry.json", "tasks.json", "cache/catalog.json"]


def nested(path: Path) -> None:
    path.write_text("[" * 200_000 + "]" * 200_000)


def nested_object(path: Path) -> None:
    path.write_text('{"models": ' * 5_000 + "{}" + "}" * 5_000)


def folder(path: Path) -> None:
    path.mkdir()
    (path / "inside").write_text("x")


def fifo(path: Path) -> None:
    os.mkfifo(path)


def dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def huge(path: Path) -> None:
    with path.open("wb") as handle:  # sparse: costs no disk
        handle.truncate(3 << 30)


DAMAGES: dict[str, Callable[[Path], None]] = {
    "nested": nested,
    "nested-object": nested_object,
    "folder": folder,
    "fifo": fifo,
    "dev-zero": dev_zero,
    "huge": huge,
}


@pytest.fixture
def installed_home(start_sidecar, repo: RepoServer, home: Path) -> Path:
    repo.add("kept", "1.0.0", {"k.bin": b"k" * 1000})
    repo.add("later", "2", {"l.bin": b"l" * 500})
    first = start_sidecar()
    first.install_and_wait("kept")
    first.stop()
    return home


def assert_daemon_works(sidecar, home: Path) -> None:
    assert sidecar.call("getInfo")["version"]
    assert sidecar.call("getModelPath", {"modelId": "kept"})["version"] == "1.0.0"
    assert {m["id"] for m in sidecar.call("listModels", {"refresh": True})["models"]} >= {"kept"}
    task = sidecar.install_and_wait("later")
    assert task["state"] == "ready", task
    folder = Path(sidecar.call("getModelPath", {"modelId": "later"})["path"])
    assert (folder / "l.bin").read_bytes() == b"l" * 500


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("name", STATE_FILES)
def test_damaged_state_file_is_set_aside_and_the_daemon_runs(
    start_sidecar, installed_home: Path, name: str, damage: str
):
    target = installed_home / name
    target.unlink(missing_ok=True)
    DAMAGES[damage](target)
    sidecar = start_sidecar()
    assert_daemon_works(sidecar, installed_home)
    if name != "tasks.json":  # tasks.json is only rewritten when a task is saved: it was
        assert target.is_file() and not target.is_symlink()
        json.loads(target.read_text())  # readable again
    if name == "registry.json":
        kept = list(installed_home.glob("registry.json.damaged-*"))
        assert len(kept) == 1, list(installed_home.iterdir())
    assert sidecar.process is not None and sidecar.process.poll() is None


@pytest.mark.parametrize("name", ["temp", "models", "metadata", "cache", "logs"])
@pytest.mark.parametrize("kind", ["file", "link"])
def test_a_home_folder_that_is_a_file_or_a_link_is_set_aside(
    start_sidecar, repo: RepoServer, home: Path, tmp_path: Path, name: str, kind: str
):
    repo.add("later", "2", {"l.bin": b"l" * 500})
    home.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    if kind == "file":
        (home / name).write_text("not a folder")
    else:
        (home / name).symlink_to(outside, target_is_directory=True)
    sidecar = start_sidecar()
    assert sidecar.install_and_wait("later")["state"] == "ready"
    assert sidecar.call("getModelPath", {"modelId": "later"})["version"] == "2"
    assert (home / name).is_dir() and not (home / name).is_symlink()
    assert list(home.glob(f"{name}.damaged-*")), list(home.iterdir())
    assert list(outside.iterdir()) == [], "the link was followed"


@pytest.mark.parametrize("odd", ["²", "١٢", "1.²", "x" * 200, "CON", ".hidden"])
def test_odd_version_folder_names_never_stop_the_daemon(
    start_sidecar, repo: RepoServer, installed_home: Path, odd: str
):
    (installed_home / "models" / "kept" / odd).mkdir()
    (installed_home / "models" / odd).mkdir(exist_ok=True)
    (installed_home / "models" / odd / odd).mkdir(exist_ok=True)
    (installed_home / "registry.json").unlink()  # make it rebuild from the folders
    sidecar = start_sidecar()
    assert_daemon_works(sidecar, installed_home)
