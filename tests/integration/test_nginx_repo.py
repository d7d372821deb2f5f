"""The production path: deploy/nginx's template, run by a real nginx on loopback over a
published tree, and a model installed through it by the real sidecar."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.repo_helpers import Nginx, nginx_binary, publish_files, raw_request
from tests.support.sidecar_proc import Sidecar

NGINX = nginx_binary()
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run does)"
)

WHISPER = {
    "model.bin": os.urandom(1_500_000),
    "config.json": b'{"layers": 12}',
    "tokenizer/vocab.json": json.dumps({"a": 1, "\u4e2d": 2}).encode(),
}
ALIGN = {"align.bin": os.urandom(300_000)}


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    storage = tmp_path / "storage"
    publish_files(storage, "align-zh", "1.0.0", ALIGN, task="alignment")
    publish_files(storage, "whisper-small-zh", "1.0.0", WHISPER, requires=("align-zh@1.0.0",))
    return storage


@pytest.fixture
def nginx(storage: Path, tmp_path: Path) -> Iterator[Nginx]:
    assert NGINX is not None
    server = Nginx(NGINX, storage, tmp_path / "nginx").start()
    yield server
    server.stop()


@pytest.fixture
def sidecar(nginx: Nginx, tmp_path: Path) -> Iterator[Sidecar]:
    process = Sidecar(home=tmp_path / "home", repositories=[nginx.url]).start()
    yield process
    process.cleanup()
    assert not process.bad_lines


def installed_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_install_through_nginx_with_the_real_sidecar(sidecar: Sidecar, nginx: Nginx, tmp_path):
    task = sidecar.install_and_wait("whisper-small-zh")
    assert task["state"] == "ready", task
    # The requirement comes along, after it.
    listed = sidecar.call("listTasks")["tasks"]
    align = next(t for t in listed if t["modelId"] == "align-zh")
    assert sidecar.wait_task(align["taskId"], {"ready", "failed"})["state"] == "ready"

    for model_id, files in (("whisper-small-zh", WHISPER), ("align-zh", ALIGN)):
        answer = sidecar.call("getModelPath", {"modelId": model_id})
        assert answer["path"] == str(tmp_path / "home" / "models" / model_id / "1.0.0")
        assert installed_files(Path(answer["path"])) == files  # exact bytes
        assert sidecar.call("verify", {"modelId": model_id})["ok"] is True
    access_log = (nginx.prefix / "access.log").read_text()
    assert "GET /storage/models/whisper-small-zh/1.0.0/model.bin" in access_log


def test_nginx_serves_ranges_etags_and_refuses_traversal(nginx: Nginx, storage: Path):
    listing = raw_request(nginx.url, "GET", "/api/models")
    assert listing.status == 200 and listing.headers["content-type"].startswith("application/json")
    assert listing.body == (storage / "api" / "models.json").read_bytes()
    entry = raw_request(nginx.url, "GET", "/api/models/align-zh")
    assert json.loads(entry.body)["id"] == "align-zh"
    assert raw_request(nginx.url, "GET", "/api/models/nope").status == 404

    target = "/storage/models/whisper-small-zh/1.0.0/model.bin"
    data = WHISPER["model.bin"]
    last = len(data) - 1
    for header, start, end in (
        ("bytes=0-9", 0, 9),
        ("bytes=100-199", 100, 199),
        ("bytes=-10", last - 9, last),
    ):
        part = raw_request(nginx.url, "GET", target, {"Range": header})
        assert part.status == 206 and part.body == data[start : end + 1]
    assert raw_request(nginx.url, "GET", target, {"Range": f"bytes={len(data)}-"}).status == 416
    etag = raw_request(nginx.url, "HEAD", target).headers["etag"]
    assert raw_request(nginx.url, "GET", target, {"If-None-Match": etag}).status == 304

    (storage.parent / "secret.txt").write_bytes(b"TOP SECRET")
    (storage / "models" / "align-zh" / "1.0.0" / "leak").symlink_to(storage.parent / "secret.txt")
    for attack in (
        "/storage/models/../../secret.txt",
        "/storage/models/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/storage/models/align-zh/1.0.0/%2E%2E/%2E%2E/%2E%2E/%2E%2E/secret.txt",
        "/storage/models/align-zh/1.0.0/leak",
        "/.publish.lock",
        "/storage/models/align-zh/model.json",
    ):
        response = raw_request(nginx.url, "GET", attack)
        assert response.status in (400, 403, 404), attack
        assert b"TOP SECRET" not in response.body
