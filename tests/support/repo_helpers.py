"""Helpers for the repository tool, nginx and CLI tests: publish sample models, run a
real nginx from a temp prefix, send raw HTTP requests, and run the CLI as a user would."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from model_repo.publish import PublishRequest, PublishResult, parse_requirement, publish

ROOT = Path(__file__).resolve().parents[2]
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "model-repository.conf"


def write_tree(folder: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def publish_files(
    storage: Path,
    model_id: str,
    version: str,
    files: dict[str, bytes],
    requires: tuple[str, ...] = (),
    force: bool = False,
    piece_size: int | None = None,
    **metadata: str,
) -> PublishResult:
    source = write_tree(storage.parent / f"src-{model_id}-{version}-{time.monotonic_ns()}", files)
    request = PublishRequest(
        source=source,
        model_id=model_id,
        version=version,
        requires=tuple(parse_requirement(r) for r in requires),
        name=metadata.get("name", ""),
        task=metadata.get("task", ""),
        languages=tuple(metadata.get("languages", "").split(","))
        if "languages" in metadata
        else (),
        force=force,
        piece_size=piece_size,
    )
    return publish(storage, request)


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(
    base_url: str, method: str, target: str, headers: dict[str, str] | None = None
) -> RawResponse:
    """Send ``target`` byte for byte (httpx would normalize ``..`` away)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request(method, target, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        connection.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


class Nginx:
    """A real nginx in the foreground, everything (config, logs, pid, temp) in ``prefix``."""

    def __init__(
        self, binary: str, storage: Path, prefix: Path, tls: tuple[Path, Path] | None = None
    ) -> None:
        self.binary = binary
        self.storage = storage.resolve()
        self.prefix = prefix
        self.port = free_port()
        self.tls = tls  # (certificate chain, key) in PEM files: serve HTTPS
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def access_log(self) -> list[str]:
        with contextlib.suppress(OSError):
            return (self.prefix / "access.log").read_text().splitlines()
        return []

    def write_config(self) -> Path:
        self.prefix.mkdir(parents=True, exist_ok=True)
        server = NGINX_TEMPLATE.read_text()
        listen = f"127.0.0.1:{self.port}" + (" ssl" if self.tls else "")
        server = server.replace("${LISTEN}", listen)
        if self.tls:
            certificates = f"ssl_certificate {self.tls[0]}; ssl_certificate_key {self.tls[1]};"
            server = server.replace("server_name _;", f"server_name _; {certificates}")
        server = server.replace("${STORAGE_ROOT}", str(self.storage))
        (self.prefix / "model-repository.conf").write_text(server)
        temp_paths = "\n".join(
            f"    {kind}_temp_path {self.prefix / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # Workers of a root master drop to `nobody`, who cannot enter pytest's 0700
        # temp folders; as root, keep them root (this nginx only listens on loopback).
        user = "user root;" if os.geteuid() == 0 else ""
        main = f"""
{user}
worker_processes 1;
pid {self.prefix / "nginx.pid"};
error_log {self.prefix / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
    types {{ application/json json; application/octet-stream bin; text/plain txt; }}
    default_type application/octet-stream;
    log_format via '$request $status $body_bytes_sent via="$http_via"'
                   ' auth="$http_authorization" range="$http_range"';
    access_log {self.prefix / "access.log"} via;
{temp_paths}
    include {self.prefix / "model-repository.conf"};
}}
"""
        config = self.prefix / "nginx.conf"
        config.write_text(main)
        return config

    def start(self, timeout: float = 10.0) -> Nginx:
        config = self.write_config()
        command = [
            self.binary, "-p", f"{self.prefix}/", "-c", str(config),
            "-e", str(self.prefix / "error.log"), "-g", "daemon off;",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited {self.process.returncode}: {self.error_log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not listen: {self.error_log()}")
            time.sleep(0.05)

    def error_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.prefix / "error.log").read_text()[-3000:]
        return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: fast shutdown of master and workers
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def run_cli(
    *args: str,
    home: Path,
    repository: str | None = None,
    scheduler: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """``model-manager`` as a subprocess, its environment cleared of the user's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_MANAGER_")}
    env["COLUMNS"] = "160"  # rich wraps tables at the terminal width; keep rows whole
    command = [sys.executable, "-m", "model_manager_cli", "--home", str(home)]
    if repository:
        command += ["--repository", repository]
    if scheduler:
        command += ["--scheduler", scheduler]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
