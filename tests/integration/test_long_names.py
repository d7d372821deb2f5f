"""Names real models have: CJK file names, 255-byte names, 50 folders deep, ids and
versions of the longest allowed length all install; names that cannot exist on Windows
or macOS are refused when the manifest is read, naming the path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.repo_server import RepoServer

CJK60 = "模型权重文件" * 10  # 60 characters, 180 bytes
CJK85 = "語" * 85  # 255 bytes
DEEP50 = "/".join(f"d{i % 10}" for i in range(49)) + "/weights.bin"  # 50 segments, 149 chars

NAMES = {
    "cjk-60": f"{CJK60}.bin",
    "ascii-255": "a" * 251 + ".bin",
    "cjk-255-bytes": CJK85,
    "fifty-segments": DEEP50,
    "deep-cjk": "/".join([CJK60] * 12) + "/x.bin",
    "mixed": f"分词器/{'t' * 200}/{CJK85}",
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_long_and_cjk_names_install(start_sidecar, repo: RepoServer, name: str):
    path = NAMES[name]
    data = os.urandom(5000)
    repo.add("longnames", "1.0.0", {path: data, "small.txt": b"s"})
    sidecar = start_sidecar()
    task = sidecar.install_and_wait("longnames")
    assert task["state"] == "ready", task
    folder = Path(sidecar.call("getModelPath", {"modelId": "longnames"})["path"])
    assert folder.joinpath(*path.split("/")).read_bytes() == data
    assert sidecar.call("verify", {"modelId": "longnames"})["ok"]


def test_longest_id_and_version_install_resume_and_remove(
    start_sidecar, repo: RepoServer, home: Path
):
    model_id, version = "m" * 128, "1." + "9" * 126
    data = os.urandom(2_000_000)
    repo.add(model_id, version, {f"{CJK60}.bin": data})
    repo.bytes_per_second = 1_000_000
    first = start_sidecar()
    task_id = first.call("install", {"modelId": model_id})["taskId"]
    first.wait_for(
        lambda: any(p.stat().st_size > 200_000 for p in (home / "temp").glob("*.part")),
        what="a partial download",
    )
    first.kill()
    repo.bytes_per_second = None
    second = start_sidecar()
    task = second.wait_task(task_id, {"ready", "failed"})
    assert task["state"] == "ready", task
    ranges = [r[2].get("Range") for r in repo.file_requests(model_id)]
    assert ranges[-1] and ranges[-1] != "bytes=0-", ranges  # resumed, not restarted
    assert second.call("remove", {"modelId": model_id})["removed"] == [version]
    assert not any(home.glob("temp/*")), list(home.glob("temp/*"))


REFUSED = {
    "con": "CON",
    "con-ext": "weights/con.bin",
    "com-superscript": "COM¹",
    "lpt-superscript-ext": "lpt³.txt",
    "conin": "CONIN$",
    "conout-ext": "conout$.log",
    "trailing-dot": "weights.",
    "trailing-space": "folder /w.bin",
    "segment-256": "b" * 256,
    "cjk-86": "語" * 86,
    "path-bytes": "/".join(["語" * 80] * 13),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_names_that_cannot_exist_everywhere_are_refused(
    start_sidecar, repo: RepoServer, home: Path, name: str
):
    path = REFUSED[name]
    repo.add("badname", "1", {path: b"x", "ok.bin": b"y"})
    sidecar = start_sidecar()
    try:
        task = sidecar.install_and_wait("badname")
    except Exception as exc:  # refused at install time: the RPC error
        error = getattr(exc, "data", None) or {}
        assert error.get("code") == "UNSAFE_MANIFEST", exc
        assert repr(path)[:60] in str(exc) or path[:40] in str(exc), exc
    else:
        assert task["state"] == "failed" and task["error"]["code"] == "UNSAFE_MANIFEST", task
        assert path[:40] in task["error"]["message"], task
    assert repo.file_requests("badname") == []
    assert not (home / "models" / "badname").exists()


COLLIDING = {
    "case": ("Weights.bin", "weights.BIN"),
    "nfc-nfd": ("caf\u00e9.bin", "cafe\u0301.bin"),
    "case-and-nfd": ("\u00c9t\u00e9/a.bin", "e\u0301te\u0301/a.bin"),
    "file-and-folder-case": ("Tok", "tok/a.bin"),
    "sharp-s": ("stra\u00dfe.bin", "STRASSE.bin"),
}


@pytest.mark.parametrize("name", sorted(COLLIDING))
def test_paths_that_collide_on_windows_or_macos_are_refused(
    start_sidecar, repo: RepoServer, name: str
):
    first, second = COLLIDING[name]
    repo.add("clash", "1", {first: b"1", second: b"2"})
    sidecar = start_sidecar()
    try:
        task = sidecar.install_and_wait("clash")
    except Exception as exc:
        assert (getattr(exc, "data", None) or {}).get("code") == "UNSAFE_MANIFEST", exc
    else:
        assert task["state"] == "failed" and task["error"]["code"] == "UNSAFE_MANIFEST", task
    assert repo.file_requests("clash") == []
