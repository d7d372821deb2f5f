"""Extension points for logging or telemetry. The default does nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sidecar.wire import Task, TaskError

# Sends a JSON-RPC notification (method, params) to the client.
Notify = Callable[[str, dict[str, Any]], Awaitable[None]]


class DownloadHooks(Protocol):
    def on_download_start(self, task: Task) -> None: ...
    def on_download_progress(self, task: Task) -> None: ...
    def on_download_error(self, task: Task, error: TaskError) -> None: ...
    def on_download_complete(self, task: Task) -> None: ...


class NoHooks:
    def on_download_start(self, task: Task) -> None:
        pass

    def on_download_progress(self, task: Task) -> None:
        pass

    def on_download_error(self, task: Task, error: TaskError) -> None:
        pass

    def on_download_complete(self, task: Task) -> None:
        pass
