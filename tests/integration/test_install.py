"""Installing through the real sidecar over pipes, against a real loopback repository."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sidecar.transfer.record import PartRecord
from tests.support.repo_server import RepoServer, sha256
from tests.support.sidecar_proc import RpcError

MODEL_BYTES = os.urandom(2_000_000)
FILES = {"model.bin": MODEL_BYTES, "conf/config.json": b'{"dim": 384}', "vocab.txt": b"a\nb\n"}


def installed_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_missing_model_is_not_available_with_reason(start_sidecar):
    sidecar = start_sidecar()
    with pytest.raises(RpcError) as raised:
        sidecar.call("getModelPath", {"modelId": "whisper-small"})
    assert raised.value.code == 1001
    assert raised.value.data == {
        "code": "MODEL_NOT_AVAILABLE",
        "modelId": "whisper-small",
        "version": None,
        "reason": "not_installed",
    }


def test_install_gives_the_exact_bytes_at_the_path(start_sidecar, repo: RepoServer, home: Path):
    repo.add("whisper-small", "1.0.0", FILES)
    sidecar = start_sidecar()
    task = sidecar.install_and_wait("whisper-small")
    assert task["state"] == "ready", task
    assert (task["bytesDone"], task["filesDone"]) == (sum(map(len, FILES.values())), 3)
    answer = sidecar.call("getModelPath", {"modelId": "whisper-small"})
    assert answer == {
        "modelId": "whisper-small",
        "version": "1.0.0",
        "path": str(home / "models" / "whisper-small" / "1.0.0"),
    }
    assert installed_files(Path(answer["path"])) == FILES
    assert list((home / "temp").glob("*.part")) == []
    assert sidecar.call("verify", {"modelId": "whisper-small"})["ok"] is True


def test_progress_and_state_notifications(start_sidecar, repo: RepoServer):
    repo.add("whisper-small", "1.0.0", FILES)
    repo.bytes_per_second = 4_000_000
    sidecar = start_sidecar()
    task = sidecar.install_and_wait("whisper-small")
    sidecar.wait_for(
        lambda: any(
            n["method"] == "models.changed" and n["params"]["state"] == "ready"
            for n in sidecar.notifications
        )
    )
    mine = [n for n in sidecar.notifications if n["params"].get("taskId") == task["taskId"]]
    progress = [n["params"] for n in mine if n["method"] == "task.progress"]
    states = [n["params"]["state"] for n in mine if n["method"] == "task.state"]
    assert len(progress) >= 2
    done = [p["bytesDone"] for p in progress]
    assert done == sorted(done), "bytesDone went backwards"
    assert progress[-1]["bytesDone"] == progress[-1]["bytesTotal"]
    assert states[0] == "queued" and states[-1] == "ready"
    assert "downloading" in states and "verifying" in states


def test_ten_installs_make_one_task_and_fetch_each_byte_once(start_sidecar, repo: RepoServer):
    repo.add("whisper-small", "1.0.0", FILES)
    repo.bytes_per_second = 1_000_000  # the task outlives all ten calls
    sidecar = start_sidecar()
    for n in range(10):
        sidecar.send(
            {
                "jsonrpc": "2.0",
                "id": f"i{n}",
                "method": "install",
                "params": {"modelId": "whisper-small"},
            }
        )
    answers = [sidecar.wait_response(f"i{n}")["result"] for n in range(10)]
    assert len({a["taskId"] for a in answers}) == 1
    sidecar.wait_task(answers[0]["taskId"], {"ready"})
    assert repo.storage_bytes() == sum(map(len, FILES.values()))
    assert len(sidecar.call("listTasks")["tasks"]) == 1


def test_already_installed_fetches_nothing_even_after_restart(start_sidecar, repo: RepoServer):
    repo.add("whisper-small", "1.0.0", FILES)
    first = start_sidecar()
    first.install_and_wait("whisper-small")
    first.stop()
    fetched = repo.storage_bytes()
    second = start_sidecar()
    answer = second.call("install", {"modelId": "whisper-small"})
    assert answer == {
        "taskId": None,
        "modelId": "whisper-small",
        "version": "1.0.0",
        "state": "ready",
    }
    assert repo.storage_bytes() == fetched


def test_requires_are_installed_with_the_model(start_sidecar, repo: RepoServer):
    repo.add(
        "whisper-small-zh", "2.0", FILES, requires=[{"model_id": "align-zh", "version": "1.1"}]
    )
    repo.add("align-zh", "1.1", {"align.bin": os.urandom(50_000)})
    repo.add("align-zh", "1.2", {"align.bin": os.urandom(60_000)})  # default, but not required
    sidecar = start_sidecar()
    task = sidecar.install_and_wait("whisper-small-zh")
    assert task["state"] == "ready"
    dependency = sidecar.wait_for(
        lambda: [
            t
            for t in sidecar.call("listTasks")["tasks"]
            if t["modelId"] == "align-zh" and t["state"] == "ready"
        ]
    )[0]
    assert dependency["version"] == "1.1"
    assert sidecar.call("getModelPath", {"modelId": "align-zh"})["version"] == "1.1"


def test_without_dependencies_only_the_model_is_installed(start_sidecar, repo: RepoServer):
    repo.add("whisper-small-zh", "2.0", FILES, requires=[{"model_id": "align-zh"}])
    repo.add("align-zh", "1.1", {"align.bin": b"x" * 100})
    sidecar = start_sidecar()
    sidecar.install_and_wait("whisper-small-zh", dependencies=False)
    assert [t["modelId"] for t in sidecar.call("listTasks")["tasks"]] == ["whisper-small-zh"]
    assert repo.file_requests("align-zh") == []


def test_tampered_bytes_fail_with_checksum_mismatch_and_install_nothing(
    start_sidecar, repo: RepoServer, home: Path
):
    stored = repo.add("whisper-small", "1.0.0", FILES)
    stored.manifest_overrides = {
        "files": [
            {"path": p, "size_bytes": len(d), "sha256": sha256(d[::-1] if p == "model.bin" else d)}
            for p, d in FILES.items()
        ]
    }
    sidecar = start_sidecar()
    task = sidecar.install_and_wait("whisper-small")
    assert task["state"] == "failed"
    assert task["error"]["code"] == "CHECKSUM_MISMATCH"
    assert repo.bytes_sent["/storage/models/whisper-small/1.0.0/model.bin"] == 2 * len(MODEL_BYTES)
    assert not (home / "models" / "whisper-small").exists()
    assert not list((home / "temp").glob("*model.bin.part"))
    with pytest.raises(RpcError) as raised:
        sidecar.call("getModelPath", {"modelId": "whisper-small"})
    assert raised.value.data["reason"] == "failed"


@pytest.mark.parametrize(
    "hostile_path",
    ["../../escape.txt", "/etc/passwd", "a/../../x", "C:evil", "ok/..", "a\\..\\b", "nul\x00byte"],
)
def test_path_traversal_in_a_manifest_is_refused(
    start_sidecar, repo: RepoServer, home: Path, hostile_path
):
    stored = repo.add("evil", "1.0", {"x.bin": b"x"})
    stored.manifest_overrides = {
        "files": [{"path": hostile_path, "size_bytes": 1, "sha256": sha256(b"x")}]
    }
    sidecar = start_sidecar()
    with pytest.raises(RpcError) as raised:
        sidecar.call("install", {"modelId": "evil"})
    assert raised.value.data["code"] == "UNSAFE_MANIFEST"
    assert repo.file_requests() == []
    outside = [p for p in home.parent.rglob("*") if home not in p.parents and p != home]
    assert all(p.name.startswith("sidecar-") for p in outside), outside


def test_unsafe_version_name_is_refused(start_sidecar, repo: RepoServer):
    stored = repo.add("evil", "1.0", {"x.bin": b"x"})
    stored.manifest_overrides = {"version": ".."}
    repo.models["evil"].default_version = ".."
    sidecar = start_sidecar()
    with pytest.raises(RpcError) as raised:
        sidecar.call("install", {"modelId": "evil"})
    assert raised.value.data["code"] == "UNSAFE_MANIFEST"


def test_unknown_model_and_version(start_sidecar, repo: RepoServer):
    repo.add("whisper-small", "1.0.0", FILES)
    sidecar = start_sidecar()
    with pytest.raises(RpcError) as raised:
        sidecar.call("install", {"modelId": "nope"})
    assert raised.value.data["code"] == "MODEL_NOT_FOUND"
    with pytest.raises(RpcError) as raised:
        sidecar.call("install", {"modelId": "whisper-small", "version": "9.9"})
    assert raised.value.data["code"] == "VERSION_NOT_FOUND"


def test_first_mirror_down_uses_the_next(start_sidecar, repo: RepoServer):
    repo.add("whisper-small", "1.0.0", FILES)
    sidecar = start_sidecar(repositories=["http://127.0.0.1:9", repo.url])
    assert sidecar.install_and_wait("whisper-small")["state"] == "ready"


def test_identical_file_in_another_version_is_not_downloaded_again(start_sidecar, repo: RepoServer):
    repo.add("whisper-small", "1.0.0", FILES)
    repo.add("whisper-small", "1.1.0", {**FILES, "vocab.txt": b"a\nb\nc\n"})
    sidecar = start_sidecar()
    sidecar.install_and_wait("whisper-small", version="1.0.0")
    before = repo.bytes_sent["/storage/models/whisper-small/1.1.0/model.bin"]
    task = sidecar.install_and_wait("whisper-small", version="1.1.0")
    assert task["state"] == "ready"
    assert repo.bytes_sent["/storage/models/whisper-small/1.1.0/model.bin"] == before == 0
    path = sidecar.call("getModelPath", {"modelId": "whisper-small"})
    assert path["version"] == "1.1.0"
    assert (Path(path["path"]) / "model.bin").read_bytes() == MODEL_BYTES


def test_not_enough_disk_space_starts_nothing(start_sidecar, repo: RepoServer, home: Path):
    stored = repo.add("huge", "1.0", {"w.bin": b"w"})
    stored.manifest_overrides = {
        "files": [{"path": "w.bin", "size_bytes": 1 << 39, "sha256": sha256(b"w")}]
    }
    sidecar = start_sidecar()
    task = sidecar.install_and_wait("huge")
    assert task["state"] == "failed"
    assert task["error"]["code"] == "INSUFFICIENT_DISK_SPACE"
    assert repo.file_requests() == []


def test_install_url_downloads_a_plain_file(start_sidecar, repo: RepoServer):
    repo.add("gguf-host", "1", {"tiny.gguf": b"GGUF" + os.urandom(800_000)})
    data = repo.models["gguf-host"].versions["1"].files["tiny.gguf"]
    repo.bytes_per_second = 800_000  # a second: several progress notifications
    sidecar = start_sidecar()
    url = f"{repo.url}/storage/models/gguf-host/1/tiny.gguf"
    started = sidecar.call("installUrl", {"url": url, "mode": "llm", "sha256": sha256(data)})
    task = sidecar.wait_task(started["taskId"], {"ready", "failed"})
    assert task["state"] == "ready", task
    assert task["bytesTotal"] == len(data)
    # The size comes from the server's Content-Length while it downloads, not at the end.
    partial = [
        n["params"] for n in sidecar.notifications
        if n["method"] == "task.progress" and 0 < n["params"]["bytesDone"] < len(data)
    ]  # fmt: skip
    assert partial and all(p["bytesTotal"] == len(data) for p in partial), partial[:3]
    path = sidecar.call("getModelPath", {"modelId": "tiny"})
    assert (Path(path["path"]) / "tiny.gguf").read_bytes() == data
    with pytest.raises(RpcError) as raised:
        sidecar.call("installUrl", {"url": "file:///etc/passwd"})
    assert raised.value.data["code"] == "UNSAFE_MANIFEST"


def test_the_token_goes_to_the_repository_only(start_sidecar, repo: RepoServer):
    repo.add("whisper-small", "1.0.0", FILES)
    sidecar = start_sidecar(env={"MODEL_MANAGER_TOKEN": "s3cret-token"})
    sidecar.install_and_wait("whisper-small")
    assert all(r[2].get("Authorization") == "Bearer s3cret-token" for r in repo.requests)
    assert "s3cret-token" not in sidecar.stderr()
    sidecar.stop()
    log_file = sidecar.home / "logs" / "sidecar.log"  # the rotating log under the home
    assert "starting" in log_file.read_text()
    assert "s3cret-token" not in log_file.read_text()


def test_slow_calls_do_not_delay_get_model_path(start_sidecar, repo: RepoServer):
    big = os.urandom(64 * 1024 * 1024)
    repo.add("big", "1", {"w.bin": big})
    repo.add("small", "1", {"w.bin": b"s"})
    sidecar = start_sidecar()
    sidecar.install_and_wait("big")
    sidecar.install_and_wait("small")
    sidecar.send(
        {"jsonrpc": "2.0", "id": "verify", "method": "verify", "params": {"modelId": "big"}}
    )
    sidecar.send(
        {"jsonrpc": "2.0", "id": "path", "method": "getModelPath", "params": {"modelId": "small"}}
    )
    done = threading.Event()

    def watch() -> None:
        for request_id in ("path", "verify"):
            sidecar.wait_response(request_id)
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    assert done.wait(30)
    order = [
        m["id"] for m in sidecar.lines if isinstance(m, dict) and m.get("id") in ("verify", "path")
    ]
    assert order == ["path", "verify"]


def test_a_missing_requirement_refuses_the_install_and_starts_nothing(
    start_sidecar, repo: RepoServer
):
    repo.add(
        "tiny", "1.0.0", {"t.bin": b"t"}, requires=[{"model_id": "missing-dep", "version": "1"}]
    )
    sidecar = start_sidecar()
    with pytest.raises(RpcError) as raised:
        sidecar.call("install", {"modelId": "tiny"})
    assert raised.value.data["code"] == "MODEL_NOT_FOUND"
    assert sidecar.call("listTasks")["tasks"] == []
    assert repo.file_requests() == []


def test_install_url_with_a_whole_part_installs_without_fetching(
    start_sidecar, repo: RepoServer, home: Path
):
    """Killed after the last byte, before the install: the server answers the resume
    with 416, which means the part is whole, not that the file is gone."""
    repo.add("gguf-host", "1", {"tiny.gguf": b"GGUF" + os.urandom(50_000)})
    data = repo.models["gguf-host"].versions["1"].files["tiny.gguf"]
    url = f"{repo.url}/storage/models/gguf-host/1/tiny.gguf"
    digest = sha256(data)
    part = home / "temp" / f"tiny@{digest[:16]}@tiny.gguf.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    record = PartRecord(url=url, sha256=digest)
    (home / "temp" / (part.name + ".json")).write_text(record.to_json().decode())
    # Left by an older build under the ambiguous names: removed at start.
    legacy = home / "temp" / "old_1.w.bin.part"
    legacy.write_bytes(b"x" * 1000)
    sidecar = start_sidecar()
    started = sidecar.call("installUrl", {"url": url, "mode": "llm", "sha256": digest})
    task = sidecar.wait_task(started["taskId"], {"ready", "failed"})
    assert task["state"] == "ready", task
    assert task["bytesTotal"] == len(data)
    assert repo.storage_bytes() == 0  # nothing fetched again
    path = sidecar.call("getModelPath", {"modelId": "tiny"})
    assert (Path(path["path"]) / "tiny.gguf").read_bytes() == data
    assert not legacy.exists()
