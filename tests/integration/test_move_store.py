"""moveStore over real pipes: the whole home moves to another folder (a rename on the
same volume) or another drive (a tmpfs mounted for the test: copied, verified, then
switched), a running download pauses and finishes at the new place, the app learns the
new paths from models.changed, a sidecar started with the old --home follows the
forwarding record, refusals name the path, and a SIGKILL at each point of the move
leaves one valid home that a rerun moves to the new place."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.repo_helpers import run_cli
from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError, Sidecar
from tests.support.tmpfs import tmpfs

ALIGN = {"align.bin": os.urandom(200_000), "vocab/ids.txt": b"1\n2\n"}
WHISPER = {"model.bin": os.urandom(1_000_000), "config.json": b'{"layers": 12}'}
KILL_ENV = "MODEL_MANAGER_TEST_MOVE_KILL"  # test-only hook of sidecar.store.relocate


@pytest.fixture
def repo() -> Iterator[RepoServer]:
    server = RepoServer().start()
    server.add("align-zh", "1.0.0", ALIGN)
    server.add("whisper-small-zh", "1.0.0", WHISPER)
    yield server
    server.stop()


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[Path]:
    """Another volume: a tmpfs. Skipped where mounting is not permitted."""
    with tmpfs(tmp_path / "drive", "32m") as mount:
        yield mount


def _start(home: Path, repo: RepoServer, **env: str) -> Sidecar:
    return Sidecar(home, repo.url, env=env).start()


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _check_home(sidecar: Sidecar, home: Path) -> None:
    """The sidecar runs on ``home`` and both models answer there, intact."""
    assert sidecar.call("getInfo")["home"] == str(home)
    for model_id, files in (("align-zh", ALIGN), ("whisper-small-zh", WHISPER)):
        path = Path(sidecar.call("getModelPath", {"modelId": model_id})["path"])
        assert path == home / "models" / model_id / "1.0.0"
        assert _files(path) == files
        assert sidecar.call("verify", {"modelId": model_id})["ok"]


def _installed_home(tmp_path: Path, repo: RepoServer) -> Path:
    home = tmp_path / "home"
    sidecar = _start(home, repo)
    try:
        for model_id in ("align-zh", "whisper-small-zh"):
            assert sidecar.install_and_wait(model_id)["state"] == "ready"
    finally:
        sidecar.stop()
        sidecar.cleanup()
    return home


def _forwarder_only(old: Path, new: Path) -> None:
    assert [p.name for p in old.iterdir()] == ["moved-to.json"]
    assert json.loads((old / "moved-to.json").read_text())["to"] == str(new)
    assert not (new / ".moving-in.json").exists()


@pytest.mark.parametrize("where", ["same-volume", "other-drive"])
def test_move_with_a_download_running(
    repo: RepoServer, tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "home"
    new = (tmp_path if where == "same-volume" else request.getfixturevalue("drive")) / "lib"
    sidecar = _start(home, repo)
    try:
        assert sidecar.install_and_wait("align-zh")["state"] == "ready"
        repo.bytes_per_second = 200_000  # ~5 s: still running when the move starts
        started = sidecar.call("install", {"modelId": "whisper-small-zh"})
        sidecar.wait_for(lambda: repo.storage_bytes("whisper-small-zh") > 100_000, 20, "bytes")
        moved = sidecar.call("moveStore", {"to": str(new)}, timeout=60)
        assert moved["home"] == str(new) and moved["previousHome"] == str(home)
        assert moved["method"] == ("rename" if where == "same-volume" else "copy")
        assert (moved["bytesCopied"] > 100_000) == (where == "other-drive")
        progress = [
            n["params"] for n in sidecar.notifications if n["method"] == "store.moveProgress"
        ]
        if where == "other-drive":  # the last of each phase says it is complete
            for phase in ("copying", "verifying"):
                last = [p for p in progress if p["phase"] == phase][-1]
                assert last["bytesDone"] == last["bytesTotal"] > 200_000, progress
                assert last["to"] == str(new)
        else:
            assert progress == []
        assert moved["resumedTasks"] == [started["taskId"]]
        assert sidecar.call("getInfo")["home"] == str(new)
        changed = [n["params"] for n in sidecar.notifications if n["method"] == "models.changed"]
        new_align = str(new / "models" / "align-zh" / "1.0.0")
        expected = {"modelId": "align-zh", "version": "1.0.0", "state": "ready", "path": new_align}
        assert any(expected.items() <= each.items() for each in changed), changed
        assert sidecar.call("getModelPath", {"modelId": "align-zh"})["path"] == new_align
        repo.bytes_per_second = None
        done = sidecar.wait_task(started["taskId"], {"ready", "failed"}, 60)
        assert done["state"] == "ready", done
        assert sum(n for p, n in repo.bytes_sent.items() if "model.bin" in p) < 1_300_000
        _check_home(sidecar, new)
    finally:
        sidecar.stop()
        sidecar.cleanup()
    _forwarder_only(home, new)
    again = _start(home, repo)  # the app still has the old --home: it is forwarded
    try:
        _check_home(again, new)
    finally:
        again.stop()
        again.cleanup()


def test_refusals_name_the_path_and_change_nothing(repo: RepoServer, tmp_path: Path) -> None:
    home = _installed_home(tmp_path, repo)
    full = tmp_path / "full"
    full.mkdir()
    (full / "photo.jpg").write_bytes(b"x")
    a_file = tmp_path / "file"
    a_file.write_bytes(b"x")
    before = _files(home / "models")
    sidecar = _start(home, repo)
    try:
        for to, code, reason in (
            (home / "models" / "elsewhere", 1009, "target_inside_home"),
            (home, 1009, "target_inside_home"),
            (full, 1009, "target_not_empty"),
            (tmp_path, 1009, "target_not_empty"),  # holds the home itself
            (a_file, 1009, "target_not_folder"),
        ):
            with pytest.raises(RpcError) as refused:
                sidecar.call("moveStore", {"to": str(to)})
            assert (refused.value.code, refused.value.data["reason"]) == (code, reason)
            assert refused.value.data["path"] == str(to)
            assert str(to) in refused.value.message
        with pytest.raises(RpcError) as relative:
            sidecar.call("moveStore", {"to": "relative/folder"})
        assert relative.value.code == 1009
        _check_home(sidecar, home)
    finally:
        sidecar.stop()
        sidecar.cleanup()
    assert _files(home / "models") == before
    assert [p.name for p in full.iterdir()] == ["photo.jpg"]
    assert not (home / "moved-to.json").exists()


def test_a_drive_without_room_is_refused(repo: RepoServer, tmp_path: Path) -> None:
    home = _installed_home(tmp_path, repo)
    with tmpfs(tmp_path / "small", "512k") as small:
        sidecar = _start(home, repo)
        try:
            with pytest.raises(RpcError) as refused:
                sidecar.call("moveStore", {"to": str(small / "lib")})
            assert refused.value.code == 1006
            assert refused.value.data["reason"] == "no_space"
            assert refused.value.data["path"] == str(small / "lib")
            assert refused.value.data["neededBytes"] > refused.value.data["freeBytes"]
            assert not (small / "lib").exists()
            _check_home(sidecar, home)
        finally:
            sidecar.stop()
            sidecar.cleanup()


@pytest.mark.parametrize(
    ("where", "point"),
    [
        ("other-drive", "before-copy"),
        ("other-drive", "mid-copy"),
        ("other-drive", "before-switch"),
        ("other-drive", "claimed"),
        ("other-drive", "after-switch"),
        ("same-volume", "before-switch"),
        ("same-volume", "claimed"),
        ("same-volume", "mid-rename"),
    ],
)
def test_sigkill_at_each_point_leaves_one_valid_home(
    repo: RepoServer, tmp_path: Path, where: str, point: str, request: pytest.FixtureRequest
) -> None:
    home = _installed_home(tmp_path, repo)
    new = (tmp_path if where == "same-volume" else request.getfixturevalue("drive")) / "lib"
    doomed = _start(home, repo, **{KILL_ENV: point})
    try:
        doomed.send({"jsonrpc": "2.0", "id": 1, "method": "moveStore", "params": {"to": str(new)}})
        assert doomed.wait_exit(30) == -9
    finally:
        doomed.cleanup()
    switched = point in ("after-switch", "mid-rename")
    assert (home / "moved-to.json").exists() == switched

    # Restarted with the old --home: one valid home, the old one or the new one, and
    # this process owns it.
    after = _start(home, repo)
    try:
        _check_home(after, new if switched else home)
        pid = after.call("getInfo")["pid"]
        assert json.loads(((new if switched else home) / "engine.lock").read_text())["pid"] == pid
        if not switched:  # rerun: it continues into its own unfinished target
            moved = after.call("moveStore", {"to": str(new)}, timeout=60)
            assert moved["home"] == str(new)
            _check_home(after, new)
        forwarded = _start(home, repo)  # attaches to the engine at the new place
        try:
            assert forwarded.call("getInfo", timeout=15) == after.call("getInfo")
        finally:
            forwarded.stop()
            forwarded.cleanup()
    finally:
        after.stop()
        after.cleanup()
    _forwarder_only(home, new)
    final = _start(home, repo)
    try:
        _check_home(final, new)
    finally:
        final.stop()
        final.cleanup()


def test_cli_move_store(repo: RepoServer, tmp_path: Path, drive: Path) -> None:
    home = _installed_home(tmp_path, repo)
    new = drive / "elsewhere" / "models-lib"
    moved = run_cli("move-store", str(new), home=home, repository=repo.url)
    assert moved.returncode == 0, moved.stderr
    assert f"-> {new}" in moved.stdout and "copied" in moved.stdout
    path = run_cli("path", "align-zh", home=home)
    assert path.stdout.strip() == str(new / "models" / "align-zh" / "1.0.0")
    refused = run_cli("move-store", str(tmp_path), home=new)
    assert refused.returncode == 1
    assert refused.stderr.startswith("INVALID_STATE:")
    assert [p.name for p in home.iterdir()] == ["moved-to.json"]


def test_move_there_and_back(repo: RepoServer, tmp_path: Path, drive: Path) -> None:
    home = _installed_home(tmp_path, repo)
    away = drive / "lib"
    sidecar = _start(home, repo)
    try:
        assert sidecar.call("moveStore", {"to": str(away)}, timeout=60)["method"] == "copy"
        back = sidecar.call("moveStore", {"to": str(home)}, timeout=60)
        assert (back["home"], back["method"]) == (str(home), "copy")
        _check_home(sidecar, home)
    finally:
        sidecar.stop()
        sidecar.cleanup()
    assert not (home / "moved-to.json").exists()
    _forwarder_only(away, home)
    for start in (home, away):
        again = _start(start, repo)
        try:
            _check_home(again, home)
        finally:
            again.stop()
            again.cleanup()
