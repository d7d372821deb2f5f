"""The human CLI against the reference server: install with progress, path, list,
errors as one line with exit codes, verify, remove, ranking, and Ctrl-C → resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model_repo.background import BackgroundServer
from tests.support.repo_helpers import publish_files, run_cli

WHISPER = {"model.bin": os.urandom(1_000_000), "config.json": b'{"layers": 12}'}
ALIGN = {"align.bin": os.urandom(200_000), "vocab/ids.txt": b"1\n2\n"}


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    storage = tmp_path / "storage"
    publish_files(storage, "align-zh", "1.0.0", ALIGN, task="alignment")
    publish_files(
        storage, "whisper-small-zh", "1.0.0", WHISPER, requires=("align-zh@1.0.0",),
        name="Whisper Small", task="asr", languages="zh,en",
    )  # fmt: skip
    return storage


@pytest.fixture
def server(storage: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(storage) as server:
        yield server


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_install_path_list_verify_remove(server: BackgroundServer, tmp_path: Path):
    home = tmp_path / "home"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, home=home, repository=server.url, scheduler=server.url)

    missing = cli("path", "whisper-small-zh")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.strip() == "MODEL_NOT_AVAILABLE: whisper-small-zh not_installed"

    installed = cli("install", "whisper-small-zh@1.0.0")
    assert installed.returncode == 0, installed.stderr
    folder = home / "models" / "whisper-small-zh" / "1.0.0"
    assert f"installed whisper-small-zh@1.0.0: {folder}" in installed.stdout
    assert "align-zh@1.0.0" in installed.stdout  # its requirement had a bar too
    assert files_under(folder) == WHISPER
    assert files_under(home / "models" / "align-zh" / "1.0.0") == ALIGN

    path = cli("path", "whisper-small-zh")
    assert (path.returncode, path.stdout.strip()) == (0, str(folder))

    listing = cli("list", "--json")
    assert listing.returncode == 0, listing.stderr
    models = {m["id"]: m for m in json.loads(listing.stdout)["models"]}
    assert models["whisper-small-zh"]["state"] == "ready"
    assert models["whisper-small-zh"]["name"] == "Whisper Small"
    assert models["align-zh"]["installed"][0]["version"] == "1.0.0"
    table = cli("list")
    assert "whisper-small-zh" in table.stdout and "ready" in table.stdout

    again = cli("install", "whisper-small-zh")
    assert again.returncode == 0 and "already installed" in again.stdout
    assert cli("verify", "whisper-small-zh").returncode == 0

    (folder / "config.json").write_bytes(b'{"layers": 13}')  # same size, other bytes
    broken = cli("verify", "whisper-small-zh")
    assert broken.returncode == 1
    assert (
        "CHECKSUM_MISMATCH: config.json of whisper-small-zh@1.0.0 does not match" in broken.stderr
    )

    removed = cli("remove", "whisper-small-zh")
    assert removed.returncode == 0 and "1.0.0" in removed.stdout
    assert cli("path", "whisper-small-zh").returncode == 1

    unknown = cli("install", "no-such-model")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("MODEL_NOT_FOUND: ")
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_ranking_through_the_sidecar(server: BackgroundServer, tmp_path: Path):
    for model_id, count in {"whisper-small-zh": 3, "marian-zh-en": 1}.items():
        for _ in range(count):
            event = {"model_id": model_id, "kind": "MODEL_NOT_AVAILABLE"}
            httpx.post(f"{server.url}/api/model-usage/events", json=event).raise_for_status()
    ranking = run_cli("ranking", "--json", home=tmp_path / "home", scheduler=server.url)
    assert ranking.returncode == 0, ranking.stderr
    items = json.loads(ranking.stdout)["items"]
    assert [(i["modelId"], i["requestCount"], i["rank"]) for i in items] == [
        ("whisper-small-zh", 3, 1),
        ("marian-zh-en", 1, 2),
    ]
    no_scheduler = run_cli("ranking", home=tmp_path / "other-home")
    assert no_scheduler.returncode == 1
    assert no_scheduler.stderr.startswith("SCHEDULER_UNAVAILABLE: ")


def test_ctrl_c_keeps_parts_then_tasks_pause_resume(tmp_path: Path):
    home, big = tmp_path / "home", {"weights.bin": os.urandom(6_000_000)}
    publish_files(tmp_path / "storage", "big-model", "1.0.0", big)
    # The sidecar writes parts in 1 MB batches: at 1 MB/s the first batch lands after
    # about a second, and the whole file takes six: time for the commands below.
    with BackgroundServer(tmp_path / "storage", bytes_per_second=1_000_000) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_MANAGER_")}
        command = [
            sys.executable, "-m", "model_manager_cli", "--home", str(home),
            "--repository", server.url, "install", "big-model",
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            # A run started in the background (nohup, `&`) inherits SIGINT ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        part = home / "temp" / "big-model@1.0.0@weights.bin.part"
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size > 0):
            assert process.poll() is None and time.monotonic() < deadline, "no download seen"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends to the CLI
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert "partial downloads are kept" in stderr
        assert part.exists() and 0 < part.stat().st_size < len(big["weights.bin"])
        assert not (home / "models" / "big-model" / "1.0.0").exists()

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return run_cli(*args, home=home, repository=server.url)

        # The interrupted task was saved: a new sidecar lists it (and carries on with it).
        (task,) = json.loads(cli("tasks", "--json").stdout)
        assert task["modelId"] == "big-model" and task["state"] in {"queued", "downloading"}
        paused = cli("pause", "big-model")
        assert paused.returncode == 0 and "big-model@1.0.0 is paused" in paused.stdout
        (task,) = json.loads(cli("tasks", "--json").stdout)  # a paused task stays paused
        assert task["state"] == "paused"

        resumed = cli("resume", task["taskId"])
        assert resumed.returncode == 0, resumed.stderr
        assert files_under(home / "models" / "big-model" / "1.0.0") == big
        assert not part.exists()
