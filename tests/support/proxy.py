"""A real forward proxy on loopback for tests: Debian's tinyproxy in the foreground,
its config and log in a temp folder."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support.repo_helpers import free_port


def tinyproxy_binary() -> str | None:
    return shutil.which("tinyproxy") or shutil.which("tinyproxy", path="/usr/bin:/usr/sbin")


class Tinyproxy:
    def __init__(self, binary: str, folder: Path, credentials: tuple[str, str] | None = None):
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.credentials = credentials
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Tinyproxy:
        self.folder.mkdir(parents=True, exist_ok=True)
        auth = f"BasicAuth {self.credentials[0]} {self.credentials[1]}" if self.credentials else ""
        config = self.folder / "tinyproxy.conf"
        config.write_text(
            f"Port {self.port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 200\n"
            f'LogFile "{self.folder / "tinyproxy.log"}"\nLogLevel Connect\n'
            f"Allow 127.0.0.1\nConnectPort {{}}\n{auth}\n".replace("ConnectPort {}\n", "")
        )
        self.process = subprocess.Popen(
            [self.binary, "-d", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"tinyproxy exited {self.process.returncode}: {self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError("tinyproxy did not listen")
            time.sleep(0.05)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "tinyproxy.log").read_text(errors="replace")
        return ""

    def requests(self) -> list[str]:
        """What the proxy was asked: 'GET http://host/path' and 'CONNECT host:port'."""
        found = []
        for line in self.log().splitlines():
            if "Request (file descriptor" in line:
                found.append(line.split("): ", 1)[1].rsplit(" HTTP/", 1)[0])
        return found

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
