"""The production setup end to end, as an operator starts it: ``model-manager-repo serve
--storage s3://… --redirect s3 --usage-db postgresql://… --workers 2`` as a process of
its own, a model installed through it by the real sidecar, and usage events ranked in
PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model_repo.s3 import S3Location, Store
from tests.support.faults import assert_installed_exactly
from tests.support.postgres import PostgresCluster
from tests.support.repo_helpers import free_port
from tests.support.seaweed import PRIVATE_BUCKET, SeaweedFS, publish_dir
from tests.support.sidecar_proc import Sidecar

TOKEN = "operator-token"


def repo_command(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "model_repo", *args], env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


@pytest.fixture
def served(
    seaweed: SeaweedFS, postgres: PostgresCluster, tmp_path: Path
) -> Iterator[tuple[str, Store, str]]:
    prefix = f"served-{os.getpid()}-{time.monotonic_ns()}"
    store = Store(S3Location(PRIVATE_BUCKET, prefix, seaweed.endpoint), seaweed.client())
    db_url = postgres.create_database(f"served_{time.monotonic_ns()}")
    port = free_port()
    process = repo_command(
        "serve", "--storage", f"s3://{PRIVATE_BUCKET}/{prefix}", "--redirect", "s3",
        "--usage-db", db_url, "--workers", "2", "--port", str(port), "--presign-expiry", "60",
        "--log-level", "warning",
        env={**seaweed.env(), "MODEL_REPO_TOKEN": TOKEN},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1].decode()[-3000:]
            try:
                if httpx.get(f"{url}/api/model-usage/ranking").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        yield url, store, db_url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for stream in (process.stdout, process.stderr):
            assert stream is not None
            stream.close()


def test_serve_redirects_with_workers_and_postgres(served, tmp_path: Path):
    url, store, db_url = served
    files = {"model.bin": os.urandom(3 << 20), "config.json": b"{}"}
    publish_dir(store, tmp_path, "marian-zh-en", "2.0.0", files)
    sidecar = Sidecar(tmp_path / "home", [url], env={"MODEL_MANAGER_TOKEN": TOKEN}).start()
    try:
        task = sidecar.install_and_wait("marian-zh-en", timeout=120)
        assert task["state"] == "ready", (task, sidecar.stderr()[-3000:])
    finally:
        sidecar.cleanup()
    assert_installed_exactly(tmp_path / "home", "marian-zh-en", "2.0.0", files)
    with httpx.Client(base_url=url) as client:
        assert client.get("/api/models").status_code == 401  # the token guards the catalog
        for _ in range(3):
            event = {"model_id": "marian-zh-en", "kind": "MODEL_NOT_AVAILABLE"}
            assert client.post("/api/model-usage/events", json=event).status_code == 201
        assert client.get("/api/model-usage/ranking").json() == [
            {"model_id": "marian-zh-en", "request_count": 3, "rank": 1}
        ]
    import psycopg

    with psycopg.connect(db_url) as db:
        row = db.execute("SELECT COUNT(*) FROM usage_events").fetchone()
    assert row is not None and row[0] == 3


def test_serve_refuses_half_an_s3_setup(tmp_path: Path):
    for args in (
        ["--storage", str(tmp_path), "--redirect", "s3"],
        ["--storage", "s3://bucket/prefix"],
    ):
        process = repo_command("serve", *args, "--port", str(free_port()), env={})
        _, err = process.communicate(timeout=60)
        assert process.returncode == 2
        assert err.decode().strip() == "error: --redirect s3 and s3:// storage go together"
