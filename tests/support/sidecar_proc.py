"""Drive the real sidecar as a subprocess over real pipes, as the Electron app does."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 20.0


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code: int = error["code"]
        self.message: str = error.get("message", "")
        self.data: Any = error.get("data")


class Sidecar:
    def __init__(
        self,
        home: Path,
        repositories: list[str] | str = (),  # type: ignore[assignment]
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,  # e.g. setpriv, to run as another user
        python: str | None = None,
    ) -> None:
        self.home = home
        self.prefix = prefix or []
        self.python = python or sys.executable
        if isinstance(repositories, str):
            repositories = [repositories]
        self.env = {
            **os.environ,
            "MODEL_MANAGER_HOME": str(home),
            "MODEL_MANAGER_REPOSITORY": ",".join(repositories),
            "MODEL_MANAGER_LOG_LEVEL": "DEBUG",
            **(env or {}),
        }
        self.args = args or []
        self.lines: list[Any] = []
        self.raw_lines: list[bytes] = []  # stdout exactly as written
        self.bad_lines: list[bytes] = []
        self.notifications: list[dict[str, Any]] = []
        self.responses: dict[Any, dict[str, Any]] = {}
        self.null_id_responses: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.ids = itertools.count(1)
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path = home.parent / f"sidecar-{home.name}-{time.monotonic_ns()}.stderr"

    def start(self) -> Sidecar:
        self.stderr_file = open(self.stderr_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*self.prefix, self.python, "-m", "sidecar", "--stall-timeout", "3", *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            env=self.env,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        assert self.process and self.process.stdout
        for raw in self.process.stdout:
            self.raw_lines.append(raw)
            try:
                message = json.loads(raw)
            except ValueError:
                with self.cond:
                    self.bad_lines.append(raw)
                continue
            with self.cond:
                self.lines.append(message)
                for item in message if isinstance(message, list) else [message]:
                    if "method" in item:
                        self.notifications.append(item)
                    elif item.get("id") is None:
                        self.null_id_responses.append(item)
                    else:
                        self.responses[item["id"]] = item
                self.cond.notify_all()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    # --- requests ----------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.process and self.process.stdin
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message: Any) -> None:
        self.send_raw(json.dumps(message).encode() + b"\n")

    def wait_response(self, request_id: Any, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        return self.wait_for(
            lambda: self.responses.get(request_id), timeout, f"answer {request_id}"
        )

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Any:
        request_id = next(self.ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        response = self.wait_response(request_id, timeout)
        if "error" in response:
            raise RpcError(response["error"])
        return response["result"]

    def wait_for(
        self, probe: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, what: str = ""
    ) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = probe()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"timed out waiting for {what}\n--- stderr ---\n{self.stderr()[-4000:]}"
                    )
                self.cond.wait(min(remaining, 0.2))

    def wait_task(self, task_id: str, states: set[str], timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.call("getTask", {"taskId": task_id})
            if task["state"] in states:
                return task
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {task['state']}\n{self.stderr()[-4000:]}")
            time.sleep(0.05)

    def install_and_wait(
        self, model_id: str, timeout: float = 60.0, **params: Any
    ) -> dict[str, Any]:
        started = self.call("install", {"modelId": model_id, **params})
        if started["taskId"] is None:
            return started
        return self.wait_task(started["taskId"], {"ready", "failed", "cancelled"}, timeout)

    # --- lifecycle -----------------------------------------------------------------------

    def close_stdin(self) -> None:
        assert self.process and self.process.stdin
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.process
        code = self.process.wait(timeout)
        self.reader.join(5)
        return code

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.close_stdin()
        try:
            return self.wait_exit()
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        if hasattr(self, "reader"):
            self.reader.join(5)

    def cleanup(self) -> None:
        self.kill()
        if self.process:
            for stream in (self.process.stdin, self.process.stdout):
                if stream:
                    with contextlib.suppress(OSError):
                        stream.close()
        if hasattr(self, "stderr_file"):
            self.stderr_file.close()
