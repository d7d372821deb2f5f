"""Follow install tasks through the sidecar's notifications, with live rich progress
bars (bytes, a smoothed speed and the ETA, per task and in total), ending with each
task's elapsed time and average speed and a summary line."""

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
from model_manager_cli.rates import TaskClock, clock_text

FINISHED = {"ready", "failed", "cancelled"}
POLL_INTERVAL = 2.0  # re-read tasks now and then, whatever the notifications say


class SpeedColumn(ProgressColumn):
    """The speed over the last few seconds; once the task ended, its average."""

    def render(self, task: BarTask) -> Text:
        speed = task.fields.get("speed") or 0.0
        shown = f"{decimal(int(speed))}/s" if speed else "-"
        if task.fields.get("elapsed") is not None and speed:
            shown += " avg"
        return Text(shown, style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """Time left while it runs; once it ended, the time it took."""

    def render(self, task: BarTask) -> Text:
        elapsed = task.fields.get("elapsed")
        if elapsed is not None:
            return Text(f"in {clock_text(elapsed)}", style="progress.elapsed")
        eta = task.fields.get("eta")
        if task.finished or eta is None:
            return Text("-:--:--", style="progress.remaining")
        return Text(clock_text(eta), style="progress.remaining")


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
        self.clocks: dict[str, TaskClock] = {}

    def _timing(self, task_id: str, task: dict[str, Any], now: float) -> dict[str, Any]:
        """Speed, ETA and (once ended) elapsed time of one task, from this CLI's clock."""
        done = task.get("bytesDone", 0)
        clock = self.clocks.setdefault(task_id, TaskClock(started=now, first_bytes=done))
        clock.observe(now, done)
        state = task.get("state")
        if state in FINISHED:
            clock.end(now)
            return {"speed": clock.average() or 0.0, "eta": None, "elapsed": clock.elapsed}
        if state != "downloading":
            return {"speed": 0.0, "eta": None, "elapsed": None}
        speed = clock.speed()
        if speed is None:  # the first second: the sidecar's figure
            return {"speed": task.get("speedBps") or 0.0, "eta": task.get("etaSeconds"),
                    "elapsed": None}  # fmt: skip
        left = max(0, (task.get("bytesTotal") or 0) - done)
        return {"speed": speed, "eta": left / speed if speed > 0 else None, "elapsed": None}

    def update(self, tasks: dict[str, dict[str, Any]]) -> None:
        now = time.monotonic()
        for task_id, task in tasks.items():
            fields: dict[str, Any] = {
                **self._timing(task_id, task, now),
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
            self._update_total(tasks)

    def _update_total(self, by_id: dict[str, dict[str, Any]]) -> None:
        tasks = list(by_id.values())
        done = sum(t.get("bytesDone", 0) for t in tasks)
        total = sum(t.get("bytesTotal", 0) for t in tasks)
        running = [self.clocks[i] for i, t in by_id.items() if t.get("state") == "downloading"]
        speed = sum(c.speed() or 0.0 for c in running)
        ended = all(t.get("state") in FINISHED for t in tasks)
        elapsed = self.elapsed() if ended else None
        if elapsed is not None:
            speed = self.downloaded() / elapsed if elapsed > 0 else 0.0
        fields: dict[str, Any] = {
            "speed": speed,
            "eta": (total - done) / speed if speed > 0 and not ended else None,
            "elapsed": elapsed,
            "files": f"{sum(t.get('filesDone', 0) for t in tasks)}/"
            f"{sum(t.get('filesTotal', 0) for t in tasks)} files",
            "state": f"{sum(t.get('state') == 'ready' for t in tasks)}/{len(tasks)} ready",
        }
        if self.total is None:
            self.total = self.progress.add_task("total", total=total or None, **fields)
        self.progress.update(self.total, completed=done, total=total or None, **fields)

    def elapsed(self) -> float:
        """From the first task seen to the last one ended."""
        if not self.clocks:
            return 0.0
        start = min(c.started for c in self.clocks.values())
        end = max(c.ended if c.ended is not None else c.started for c in self.clocks.values())
        return end - start

    def downloaded(self) -> int:
        return sum(c.downloaded for c in self.clocks.values())

    def summary(self, tasks: dict[str, dict[str, Any]]) -> str:
        """One line, as a download tool ends: what came of it, how much, how long, how fast."""
        counts = {
            state: sum(t.get("state") == state for t in tasks.values())
            for state in ("ready", "failed", "cancelled")
        }
        outcome = ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "nothing"
        elapsed, downloaded = self.elapsed(), self.downloaded()
        line = f"{outcome}: downloaded {decimal(downloaded)} in {clock_text(elapsed)}"
        if elapsed > 0 and downloaded:
            line += f" ({decimal(int(downloaded / elapsed))}/s average)"
        return line


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
    console.print(view.summary(tasks), markup=False, highlight=False, soft_wrap=True)
    return tasks
