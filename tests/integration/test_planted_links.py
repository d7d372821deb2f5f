"""Links planted in the home are never followed: lock files, state files, logs and
folders that point outside receive nothing, and the outside stays as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.store.layout import HomeLayout
from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError

PRECIOUS = b"the user's own file\n"


def plant(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)  # registry.json.lock and tasks.json.lock stay once made
    link.symlink_to(target)


LOCK_LINKS = {
    "task-lock": lambda layout: layout.task_lock("m", "1"),
    "part-lock": lambda layout: layout.part("m", "1", "w.bin").with_suffix(".part.lock"),
    "registry-lock": lambda layout: layout.registry_lock,
    "tasks-lock": lambda layout: layout.root / "tasks.json.lock",
    "log-file": lambda layout: layout.logs / "sidecar.log",
    "registry": lambda layout: layout.registry,
    "tasks": lambda layout: layout.tasks_file,
    "catalog": lambda layout: layout.cache / "catalog.json",
}


@pytest.mark.parametrize("where", sorted(LOCK_LINKS))
@pytest.mark.parametrize("exists", [True, False])
def test_a_planted_file_link_is_never_followed(
    start_sidecar, repo: RepoServer, home: Path, tmp_path: Path, where: str, exists: bool
):
    repo.add("m", "1", {"w.bin": b"w" * 3000})
    outside = tmp_path / "outside" / "victim.txt"
    outside.parent.mkdir()
    if exists:
        outside.write_bytes(PRECIOUS)
    layout = HomeLayout(home)
    link = LOCK_LINKS[where](layout)
    if where.endswith("-lock"):  # planted while the daemon runs: the start-up sweep is past
        sidecar = start_sidecar()
        sidecar.call("getInfo")
        plant(link, outside)
    else:
        plant(link, outside)
        sidecar = start_sidecar()
    task = sidecar.install_and_wait("m")
    assert task["state"] == "ready", task
    assert sidecar.call("getModelPath", {"modelId": "m"})["version"] == "1"
    sidecar.stop()
    if exists:
        assert outside.read_bytes() == PRECIOUS
    else:
        assert not outside.exists(), "a file was created through the link"
    assert list(outside.parent.iterdir()) == ([outside] if exists else [])


@pytest.mark.parametrize("folder", ["models", "metadata"])
def test_a_planted_model_folder_link_is_refused_by_name(
    start_sidecar, repo: RepoServer, home: Path, tmp_path: Path, folder: str
):
    repo.add("m", "1", {"w.bin": b"w" * 3000})
    outside = tmp_path / "outside"
    outside.mkdir()
    plant(home / folder / "m", outside)
    sidecar = start_sidecar()
    task = sidecar.install_and_wait("m")
    assert task["state"] == "failed", task
    assert task["error"]["code"] == "HOME_UNAVAILABLE", task
    assert str(home / folder / "m") in task["error"]["message"]
    assert list(outside.iterdir()) == [], "files were written through the link"
    with pytest.raises(RpcError) as raised:
        sidecar.call("getModelPath", {"modelId": "m"})
    assert raised.value.data["code"] == "MODEL_NOT_AVAILABLE"


def test_remove_never_deletes_through_a_link(
    start_sidecar, repo: RepoServer, home: Path, tmp_path: Path
):
    repo.add("m", "1", {"w.bin": b"w" * 3000})
    sidecar = start_sidecar()
    assert sidecar.install_and_wait("m")["state"] == "ready"
    sidecar.stop()
    # Someone moves the model elsewhere and leaves a link; its registry entry remains.
    outside = tmp_path / "elsewhere"
    (home / "models" / "m").rename(outside)
    (home / "models" / "m").symlink_to(outside, target_is_directory=True)
    (home / "registry.json").write_text((home / "registry.json").read_text())
    sidecar = start_sidecar()
    try:
        sidecar.call("remove", {"modelId": "m"})
    except RpcError as exc:
        assert exc.data["code"] in {"HOME_UNAVAILABLE", "MODEL_NOT_AVAILABLE"}, exc.data
    assert (outside / "1" / "w.bin").read_bytes() == b"w" * 3000
