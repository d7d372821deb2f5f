"""Follow install tasks through the sidecar's notifications, with live rich progress
bars (bytes, speed and ETA as the sidecar computes them, per task and in total)."""

from __future__ import annotations

import queue
import time
from typing import Any

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
)
from rich.progress import Task as BarTask
from rich.table import Column
from rich.text import Text

from model_manager_cli.client import SidecarClient

FINISHED = {"ready", "failed", "cancelled"}
POLL_INTERVAL = 2.0  # re-read tasks now and then, whatever the notifications say


class SpeedColumn(ProgressColumn):
    """The sidecar's own speed figure, so the CLI shows what the app would show."""

    def render(self, task: BarTask) -> Text:
        speed = task.fields.get("speed") or 0.0
        return Text(f"{decimal(int(speed))}/s" if speed else "-", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    def render(self, task: BarTask) -> Text:
        eta = task.fields.get("eta")
        if task.finished or eta is None:
            return Text("-:--:--", style="progress.remaining")
        minutes, seconds = divmod(int(eta), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


def _state_text(task: dict[str, Any]) -> str:
    state = str(task.get("state", "?"))
    if task.get("waitingFor") and state == "queued":
        return f"queued: {task['waitingFor']}"[:48]
    if task.get("error"):
        return f"{state}: {task['error'].get('code')}"
    return state


class InstallView:
    """One bar per task, and a total bar when there is more than one."""

    def __init__(self, console: Console) -> None:
        # Numbers never wrap; names and states are cut first on a narrow terminal.
        fixed, squeezable = Column(no_wrap=True), Column(no_wrap=True, overflow="ellipsis")
        self.progress = Progress(
            TextColumn("[bold]{task.description}", table_column=squeezable),
            BarColumn(bar_width=24),
            DownloadColumn(table_column=fixed),
            SpeedColumn(table_column=fixed),
            EtaColumn(table_column=fixed),
            TextColumn("{task.fields[files]}", table_column=fixed),
            TextColumn("{task.fields[state]}", table_column=squeezable),
            console=console,
            refresh_per_second=10,
        )
        self.bars: dict[str, TaskID] = {}
        self.total: TaskID | None = None

    def update(self, tasks: dict[str, dict[str, Any]]) -> None:
        for task_id, task in tasks.items():
            fields: dict[str, Any] = {
                "speed": task.get("speedBps") or 0.0,
                "eta": task.get("etaSeconds"),
                "files": f"{task.get('filesDone', 0)}/{task.get('filesTotal', 0)} files",
                "state": _state_text(task),
            }
            if task_id not in self.bars:
                self.bars[task_id] = self.progress.add_task(
                    f"{task['modelId']}@{task['version']}", total=None, **fields
                )
            self.progress.update(
                self.bars[task_id],
                completed=task.get("bytesDone", 0),
                total=task.get("bytesTotal") or None,
                **fields,
            )
        if len(tasks) > 1:
            self._update_total(list(tasks.values()))

    def _update_total(self, tasks: list[dict[str, Any]]) -> None:
        done = sum(t.get("bytesDone", 0) for t in tasks)
        total = sum(t.get("bytesTotal", 0) for t in tasks)
        speed = sum(t.get("speedBps") or 0.0 for t in tasks if t.get("state") == "downloading")
        fields: dict[str, Any] = {
            "speed": speed,
            "eta": (total - done) / speed if speed > 0 else None,
            "files": f"{sum(t.get('filesDone', 0) for t in tasks)}/"
            f"{sum(t.get('filesTotal', 0) for t in tasks)} files",
            "state": f"{sum(t.get('state') == 'ready' for t in tasks)}/{len(tasks)} ready",
        }
        if self.total is None:
            self.total = self.progress.add_task("total", total=total or None, **fields)
        self.progress.update(self.total, completed=done, total=total or None, **fields)


def follow(
    client: SidecarClient, task_ids: list[str], console: Console
) -> dict[str, dict[str, Any]]:
    """Show progress until every task is ready, failed or cancelled; their last state."""
    tasks = {tid: client.call("getTask", {"taskId": tid}) for tid in task_ids}
    view = InstallView(console)
    with view.progress:
        view.update(tasks)
        last_poll = time.monotonic()
        while not all(t["state"] in FINISHED for t in tasks.values()):
            try:
                message = client.notifications.get(timeout=0.25)
            except queue.Empty:
                message = None
            if message is not None and message.get("method") in {"task.progress", "task.state"}:
                params = message.get("params") or {}
                known = tasks.get(params.get("taskId", ""))
                # A late progress line must not move a finished task back.
                if known is not None and known["state"] not in FINISHED:
                    tasks[params["taskId"]] = params
            if time.monotonic() - last_poll > POLL_INTERVAL:
                last_poll = time.monotonic()
                for tid, task in tasks.items():
                    if task["state"] not in FINISHED:
                        tasks[tid] = client.call("getTask", {"taskId": tid})
            view.update(tasks)
    return tasks
