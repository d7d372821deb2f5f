"""importModel over real pipes against the reference server: files already on disk (a
copy of a published version folder, as on a USB stick) become an installed version in
copy, hardlink or move mode, each file checked against the manifest's SHA-256 first; one
corrupted file registers nothing and loses nothing; offline, the manifest.json beside the
files (which publish writes) is the manifest."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_repo.background import BackgroundServer
from tests.support.repo_helpers import publish_files, run_cli
from tests.support.sidecar_proc import RpcError, Sidecar
from tests.support.tmpfs import tmpfs

FILES = {
    "model.bin": os.urandom(700_000),
    "config.json": b'{"layers": 12}',
    "vocab/ids.txt": b"1\n2\n3\n",
}
MODEL, VERSION = "whisper-small-zh", "1.0.0"


@pytest.fixture
def published(tmp_path: Path) -> Path:
    result = publish_files(tmp_path / "storage", MODEL, VERSION, FILES, task="asr")
    return result.path


@pytest.fixture
def server(published: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(published.parents[2]) as server:
        yield server


@pytest.fixture
def stick(published: Path, tmp_path: Path) -> Path:
    """A copy of the published folder: the files, manifest.json and checksum.sha256."""
    return Path(shutil.copytree(published, tmp_path / "usb" / f"{MODEL}-{VERSION}"))


def _sidecar(home: Path, repository: str, args: list[str] | None = None) -> Sidecar:
    return Sidecar(home, repository, args=args).start()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode", ["copy", "hardlink", "move"])
def test_import_registers_the_files_in_each_mode(
    server: BackgroundServer, stick: Path, tmp_path: Path, mode: str
) -> None:
    home = tmp_path / "home"
    before = _tree(stick)
    sidecar = _sidecar(home, server.url)
    try:
        result = sidecar.call(
            "importModel", {"modelId": MODEL, "version": VERSION, "path": str(stick), "mode": mode}
        )
        folder = home / "models" / MODEL / VERSION
        assert result["path"] == str(folder) and result["mode"] == mode
        assert result["manifestSource"] == "catalog"
        assert (result["files"], result["sizeBytes"]) == (3, sum(map(len, FILES.values())))
        assert _tree(folder) == FILES
        assert sidecar.call("getModelPath", {"modelId": MODEL})["path"] == str(folder)
        assert sidecar.call("verify", {"modelId": MODEL})["ok"]
        installed = sidecar.call("install", {"modelId": MODEL})
        assert (installed["taskId"], installed["state"]) == (None, "ready")
        changed = [n["params"] for n in sidecar.notifications if n["method"] == "models.changed"]
        expected = {"modelId": MODEL, "version": VERSION, "state": "ready", "path": str(folder)}
        assert any(expected.items() <= each.items() for each in changed), changed
        with pytest.raises(RpcError) as again:
            sidecar.call("importModel", {"modelId": MODEL, "version": VERSION, "path": str(stick)})
        assert again.value.data["reason"] == "already_installed"
    finally:
        sidecar.stop()
        sidecar.cleanup()
    after = _tree(stick)
    if mode == "move":
        assert after == {k: v for k, v in before.items() if k not in FILES}  # manifest stays
    else:
        assert after == before
    if mode == "hardlink":
        assert (stick / "model.bin").stat().st_ino == (folder / "model.bin").stat().st_ino
    else:
        assert (folder / "model.bin").stat().st_nlink == 1
    assert not any((home / "temp").iterdir())


@pytest.mark.parametrize("mode", ["copy", "hardlink", "move"])
def test_one_corrupted_file_registers_nothing_and_loses_nothing(
    server: BackgroundServer, stick: Path, tmp_path: Path, mode: str
) -> None:
    corrupted = bytearray(FILES["model.bin"])
    corrupted[123_456] ^= 0xFF  # same size: only the checksum can tell
    (stick / "model.bin").write_bytes(corrupted)
    before = _tree(stick)
    home = tmp_path / "home"
    sidecar = _sidecar(home, server.url)
    try:
        with pytest.raises(RpcError) as refused:
            sidecar.call(
                "importModel",
                {"modelId": MODEL, "version": VERSION, "path": str(stick), "mode": mode},
            )
        assert refused.value.code == 1005
        assert refused.value.data["code"] == "CHECKSUM_MISMATCH"
        assert refused.value.data["problems"] == [
            {"path": "model.bin", "problem": "checksum_mismatch"}
        ]
        assert "nothing was imported" in refused.value.message
        with pytest.raises(RpcError) as missing:
            sidecar.call("getModelPath", {"modelId": MODEL})
        assert missing.value.data["reason"] == "not_installed"
        listed = sidecar.call("listModels")["models"]
        assert [m["installed"] for m in listed if m["id"] == MODEL] == [[]]
    finally:
        sidecar.stop()
        sidecar.cleanup()
    assert _tree(stick) == before  # every source file where and as it was
    assert not (home / "models" / MODEL).exists()
    assert not (home / "metadata" / MODEL / f"{VERSION}.json").exists()
    assert not any((home / "temp").iterdir())
    assert MODEL not in (home / "registry.json").read_text()


def test_a_missing_or_resized_file_is_named(
    server: BackgroundServer, stick: Path, tmp_path: Path
) -> None:
    (stick / "vocab" / "ids.txt").unlink()
    (stick / "config.json").write_bytes(b"{}")
    sidecar = _sidecar(tmp_path / "home", server.url)
    try:
        with pytest.raises(RpcError) as refused:
            sidecar.call("importModel", {"modelId": MODEL, "version": VERSION, "path": str(stick)})
        assert sorted(map(tuple, map(dict.values, refused.value.data["problems"]))) == [
            ("config.json", "size_mismatch"),
            ("vocab/ids.txt", "missing"),
        ]
    finally:
        sidecar.stop()
        sidecar.cleanup()


def test_offline_the_manifest_beside_the_files_is_used(stick: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    sidecar = _sidecar(home, "http://127.0.0.1:9", ["--offline"])
    try:
        result = sidecar.call(
            "importModel", {"modelId": MODEL, "version": VERSION, "path": str(stick)}
        )
        assert result["manifestSource"] == "file"
        assert _tree(Path(result["path"])) == FILES
        (stick / "manifest.json").unlink()
        sidecar.call("remove", {"modelId": MODEL})
        with pytest.raises(RpcError) as refused:
            sidecar.call("importModel", {"modelId": MODEL, "version": VERSION, "path": str(stick)})
        beside = str(stick / "manifest.json")
        assert refused.value.data == {
            "code": "REPOSITORY_UNAVAILABLE", "reason": "offline", "path": beside,
            "modelId": MODEL, "version": VERSION,
        }  # fmt: skip
    finally:
        sidecar.stop()
        sidecar.cleanup()


def test_cli_import(server: BackgroundServer, stick: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = run_cli("import", f"{MODEL}@{VERSION}", str(stick), "--mode", "hardlink",
                   home=home, repository=server.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"imported {MODEL}@{VERSION} (3 files" in done.stdout
    path = run_cli("path", MODEL, home=home)
    assert path.stdout.strip() == str(home / "models" / MODEL / VERSION)


@pytest.fixture
def usb_drive(tmp_path: Path) -> Iterator[Path]:
    """A stick on another volume: a tmpfs. Skipped where mounting is not permitted."""
    with tmpfs(tmp_path / "usb-drive", "16m") as mount:
        yield mount


def test_from_another_drive_move_copies_and_hardlink_is_refused(
    server: BackgroundServer, published: Path, usb_drive: Path, tmp_path: Path
) -> None:
    stick = Path(shutil.copytree(published, usb_drive / "model"))
    before = _tree(stick)
    home = tmp_path / "home"
    sidecar = _sidecar(home, server.url)
    try:
        params = {"modelId": MODEL, "version": VERSION, "path": str(stick)}
        with pytest.raises(RpcError) as refused:
            sidecar.call("importModel", {**params, "mode": "hardlink"})
        assert refused.value.data["reason"] == "cross_device"
        assert "different drives" in refused.value.message
        assert _tree(stick) == before
        result = sidecar.call("importModel", {**params, "mode": "move"})
        assert _tree(Path(result["path"])) == FILES
    finally:
        sidecar.stop()
        sidecar.cleanup()
    assert _tree(stick) == {k: v for k, v in before.items() if k not in FILES}
