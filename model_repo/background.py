"""Run the reference server on a loopback port in a background thread (demo, tests)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from model_repo.s3 import S3Location
from model_repo.server import create_app


class BackgroundServer:
    def __init__(
        self,
        storage: Path | S3Location,
        *,
        token: str | None = None,
        usage_db: str | Path | None = None,
        bytes_per_second: float | None = None,
        host: str = "127.0.0.1",
        **options: Any,  # create_app's others: presign_expiry, event_rate...
    ) -> None:
        app = create_app(
            storage, token=token, usage_db=usage_db, bytes_per_second=bytes_per_second, **options
        )
        # Bind first (port 0) so the URL is known before the server starts.
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, 0))
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", ws="none", http="h11", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the repository server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
