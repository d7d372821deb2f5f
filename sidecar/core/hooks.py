"""Download hooks: logging, telemetry or an organisation's own policy, without a fork.

A package registers a class under the entry-point group ``model_manager.hooks`` (in
its pyproject: ``[project.entry-points."model_manager.hooks"] name = "pkg.mod:Cls"``);
the sidecar creates one instance of each at start and calls it on the loop for every
task that starts, progresses, fails or completes. A hook's exception is logged and
never reaches the download. With none installed nothing runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sidecar.wire import Task, TaskError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "model_manager.hooks"

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


class HookChain:
    """Every installed hook in turn; one that raises is logged and skipped."""

    def __init__(self, hooks: list[tuple[str, Any]]) -> None:
        self.hooks = hooks

    def _each(self, event: str, *args: Any) -> None:
        for name, hook in self.hooks:
            method = getattr(hook, event, None)
            if method is None:
                continue
            try:
                method(*args)
            except Exception:
                log.exception("download hook %s failed in %s", name, event)

    def on_download_start(self, task: Task) -> None:
        self._each("on_download_start", task)

    def on_download_progress(self, task: Task) -> None:
        self._each("on_download_progress", task)

    def on_download_error(self, task: Task, error: TaskError) -> None:
        self._each("on_download_error", task, error)

    def on_download_complete(self, task: Task) -> None:
        self._each("on_download_complete", task)


def installed_hooks() -> DownloadHooks:
    """The hooks that installed packages register (blocking: reads package metadata)."""
    from importlib.metadata import entry_points  # after the first answer: Manager.complete

    loaded: list[tuple[str, Any]] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded.append((entry.name, entry.load()()))
        except Exception:
            log.exception("cannot load download hook %s (%s)", entry.name, entry.value)
            continue
        log.info("download hook %s loaded from %s", entry.name, entry.value)
    return HookChain(loaded) if loaded else NoHooks()
