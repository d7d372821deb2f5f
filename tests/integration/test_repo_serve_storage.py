"""``model-manager-repo serve --storage`` as run by hand (issue 15, item 6): a folder
that does not exist is a typo and is refused; an empty one is served with a warning."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.repo_helpers import free_port


def serve(storage: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "model_repo", "serve", "--storage", str(storage),
            "--port", str(port)]  # fmt: skip


def test_a_missing_storage_folder_is_refused(tmp_path: Path):
    typo = tmp_path / "typo"
    done = subprocess.run(serve(typo, free_port()), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"the storage folder {typo} does not exist" in done.stderr
    assert "publish" in done.stderr
    assert "Traceback" not in done.stderr
    assert not typo.exists(), "the typo became a folder"


def test_an_empty_storage_folder_is_served_with_a_warning(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    log = tmp_path / "serve.stderr"
    with log.open("wb") as stderr:
        process = subprocess.Popen(serve(empty, port), stderr=stderr, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert answer.status_code in (200, 404)
        assert f"warning: {empty} holds no published models" in log.read_text()
    finally:
        process.terminate()
        process.wait(10)
