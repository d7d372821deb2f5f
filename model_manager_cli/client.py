"""A JSON-RPC client for a sidecar this process launches itself, over its stdin/stdout:
the same protocol the Electron app speaks, so the CLI dogfoods it."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import IO, Any

DEFAULT_TIMEOUT = 60.0
JSONRPC_NAMES = {
    -32700: "PARSE_ERROR",
    -32600: "INVALID_REQUEST",
    -32601: "METHOD_NOT_FOUND",
    -32602: "INVALID_PARAMS",
    -32603: "INTERNAL_ERROR",
}


class SidecarError(Exception):
    """An error answer: ``name`` is ``data.code`` (e.g. MODEL_NOT_AVAILABLE)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data if isinstance(data, dict) else {}
        self.raw_data = data
        self.name: str = self.data.get("code") or JSONRPC_NAMES.get(code, f"ERROR_{code}")

    def one_line(self) -> str:
        problems = self.raw_data if isinstance(self.raw_data, list) else []
        fields = [p for p in problems if isinstance(p, dict) and "field" in p]
        if self.name == "INVALID_PARAMS" and fields:
            # The sidecar's field-level detail, not its generic "Invalid params".
            shown = "; ".join(f"{p['field']}: {p.get('problem', 'invalid')}" for p in fields)
            return f"{self.name}: {shown}"
        if self.name == "MODEL_NOT_AVAILABLE" and "reason" in self.data:
            model = self.data.get("modelId", "?")
            if self.data.get("version"):
                model += f"@{self.data['version']}"
            return f"{self.name}: {model} {self.data['reason']}"
        return f"{self.name}: {self.message}"


class SidecarGone(Exception):
    """The sidecar exited (or never started); ``details`` is the end of its stderr."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class LaunchOptions:
    home: str | None = None
    repository: str | None = None
    scheduler: str | None = None
    extra_args: tuple[str, ...] = ()


class SidecarClient:
    def __init__(self, options: LaunchOptions) -> None:
        self.options = options
        self.notifications: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None
        # The sidecar logs to stderr; keep it out of the terminal but at hand if it dies.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "sidecar"]
        for flag, value in (
            ("--home", self.options.home),
            ("--repository", self.options.repository),
            ("--scheduler", self.options.scheduler),
        ):
            if value:
                args += [flag, value]
        return [*args, *self.options.extra_args]

    def start(self) -> SidecarClient:
        # Its own process group: Ctrl-C reaches only us, and we stop the sidecar
        # gracefully (parts kept for resume) instead of it dying mid-write.
        windows = sys.platform == "win32"
        try:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                start_new_session=not windows,
                creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) if windows else 0,
            )
        except OSError as exc:
            raise SidecarGone(f"cannot start the sidecar: {exc}") from exc
        self._reader = threading.Thread(target=self._read, name="sidecar-reader", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for raw in self._process.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue  # the protocol promises JSON lines; ignore anything else
            for item in message if isinstance(message, list) else [message]:
                if not isinstance(item, dict):
                    continue
                if "method" in item:
                    self.notifications.put(item)
                    continue
                with self._lock:
                    future = self._pending.pop(item.get("id"), None)  # type: ignore[arg-type]
                if future is None:
                    continue
                if "error" in item:
                    error = item["error"]
                    future.set_exception(
                        SidecarError(
                            error.get("code", 0), error.get("message", ""), error.get("data")
                        )
                    )
                else:
                    future.set_result(item.get("result"))
        gone = SidecarGone("the sidecar exited", self.stderr_tail())
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(gone)
        self.notifications.put(None)  # wakes a follower: no more notifications

    def stderr_tail(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._stderr.flush()
            size = self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, size - limit))
            return self._stderr.read().decode(errors="replace")
        return ""

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Any:
        process = self._process
        if process is None or process.stdin is None:
            raise SidecarGone("the sidecar is not running")
        request_id = next(self._ids)
        future: Future[Any] = Future()
        with self._lock:
            self._pending[request_id] = future
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        try:
            process.stdin.write(json.dumps(message).encode() + b"\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            with self._lock:
                self._pending.pop(request_id, None)
            raise SidecarGone("the sidecar exited", self.stderr_tail()) from exc
        try:
            return future.result(timeout)
        except FutureTimeout as exc:
            raise SidecarGone(f"no answer to {method} within {timeout:.0f}s") from exc

    def close(self, timeout: float = 20.0) -> None:
        """Graceful stop: the sidecar keeps ``.part`` files and releases its locks."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(SidecarGone, SidecarError):
                self.call("shutdown", timeout=5.0)
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process is not None and process.stdout is not None:
            self._reader.join(5)  # it ends at EOF; closing under it would break its read
            process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> SidecarClient:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
