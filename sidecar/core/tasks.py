"""A task's live state and its persistence across restarts."""

from __future__ import annotations

import functools
import json
import logging
import uuid
from dataclasses import dataclass, field

import anyio
from pydantic import TypeAdapter, ValidationError

from sidecar.manifest import CatalogVersion
from sidecar.redact import redact_text, redact_url
from sidecar.speed import SpeedWindow
from sidecar.store.fsutil import atomic_write_bytes, read_json
from sidecar.store.layout import HomeLayout
from sidecar.store.locks import BlockingFileLock
from sidecar.wire import Task, TaskError, TaskState
from sidecar.wire_files import PersistedTask

log = logging.getLogger(__name__)

HISTORY_KEPT = 20  # problems a task got over, kept for getTask (the oldest go first)


@dataclass
class UrlSource:
    url: str
    filename: str
    mode: str | None
    sha256: str | None


@dataclass(eq=False)
class TaskRuntime:
    model_id: str
    version: str
    name: str = ""
    model_task: str = ""
    manifest: CatalogVersion | None = None
    url_source: UrlSource | None = None
    task_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    state: TaskState = TaskState.QUEUED
    bytes_total: int = 0
    files_total: int = 0
    files_done: int = 0
    error: TaskError | None = None
    waiting_for: str | None = None
    after: TaskRuntime | None = None
    stop_request: TaskState | None = None  # PAUSED or CANCELLED, asked for by the client
    scope: anyio.CancelScope | None = None
    finished: anyio.Event = field(default_factory=anyio.Event)
    # Raw bytes on disk go down on a restart; what a client is shown never does.
    raw_bytes: int = 0
    on_disk_known: bool = False  # show_on_disk ran: a start shows these bytes first
    shown_bytes: int = 0
    speed_bps: float = 0.0
    history: list[TaskError] = field(default_factory=list)
    repair: bool = False  # a damaged installed version: fetch only its wrong files
    speed_known: bool = False
    _speed: SpeedWindow = field(default_factory=SpeedWindow)

    @property
    def key(self) -> tuple[str, str]:
        return (self.model_id, self.version)

    def add_bytes(self, delta: int) -> None:
        self.raw_bytes += delta
        if self.raw_bytes > self.shown_bytes:
            self.shown_bytes = min(self.raw_bytes, self.bytes_total or self.raw_bytes)

    def show_on_disk(self, verified: int) -> None:
        """Bytes a resume keeps, known before the download starts: the first thing a
        client is shown of a resumed task (never less than it was shown before)."""
        self.raw_bytes = verified
        self.on_disk_known = True
        self.add_bytes(0)

    def sample_speed(self) -> None:
        """Called every progress tick while downloading: the speed over the window."""
        self._speed.add(self.raw_bytes)
        speed = self._speed.speed()
        self.speed_known = speed is not None
        self.speed_bps = max(0.0, speed or 0.0)

    def note(self, code: str, message: str) -> None:
        """A problem the task got over (a bad piece fetched again, a source dropped)."""
        self.history = [*self.history, TaskError(code=code, message=message)][-HISTORY_KEPT:]

    def reset_speed(self) -> None:
        self.speed_bps = 0.0
        self.speed_known = False
        self._speed.reset()

    def snapshot(self) -> Task:
        remaining = max(0, self.bytes_total - self.shown_bytes)
        eta: float | None = None
        if self.speed_known and self.state == TaskState.DOWNLOADING:
            if not remaining:
                eta = 0.0
            elif self.speed_bps > 0:
                eta = remaining / self.speed_bps
        if self.state == TaskState.READY:
            eta = 0.0
        return Task(
            task_id=self.task_id,
            model_id=self.model_id,
            version=self.version,
            state=self.state,
            bytes_done=self.shown_bytes,
            bytes_total=self.bytes_total,
            speed_bps=round(self.speed_bps, 1) if self.state == TaskState.DOWNLOADING else 0.0,
            eta_seconds=round(eta, 1) if eta is not None else None,
            files_done=self.files_done,
            files_total=self.files_total,
            # What getTask and every notification carry: no URL secret in a message.
            error=self.error.model_copy(update={"message": redact_text(self.error.message)})
            if self.error
            else None,
            waiting_for=self.waiting_for,
            history=[
                e.model_copy(update={"message": redact_text(e.message)}) for e in self.history
            ],
        )

    def persisted(self) -> PersistedTask:
        source = self.url_source
        return PersistedTask(
            task_id=self.task_id,
            model_id=self.model_id,
            version=self.version,
            state=self.state,
            url=source.url if source else None,
            filename=source.filename if source else None,
            mode=source.mode if source else None,
            sha256=source.sha256 if source else None,
            repair=self.repair,
            bytes_total=self.bytes_total,
            files_total=self.files_total,
            # Kept on disk: no URL secret in it (an INTERNAL_ERROR's text is not redacted).
            error=self.error.model_copy(update={"message": redact_text(self.error.message)})
            if self.error
            else None,
        )


@functools.cache
def _persisted_list() -> TypeAdapter[list[PersistedTask]]:
    # Built when first used, not at import: a fresh start has no tasks.json to read.
    return TypeAdapter(list[PersistedTask])


class TaskStore:
    """tasks.json: unfinished tasks of every process on this home, so they resume after
    a crash. Read-modify-write under a lock; blocking (call through ``anyio.to_thread``).

    An installUrl task's URL is kept in tasks.json with its user info and query values
    masked; the URL itself, needed to resume, is kept in ``tasks.secrets.json`` (mode
    0600, by task id) until the task ends, and the file is removed when none is left."""

    def __init__(self, layout: HomeLayout) -> None:
        self.fs = layout.fs
        self.path = layout.tasks_file
        self.secrets_path = layout.root / "tasks.secrets.json"
        self.lock_path = layout.root / "tasks.json.lock"

    def load(self) -> list[PersistedTask]:
        try:
            with BlockingFileLock(self.lock_path):
                return self._read()
        except OSError as exc:  # a home we cannot write: read what is there
            log.warning("cannot lock tasks.json (%s): reading it unlocked", exc)
            return self._read(set_aside=False)

    def save(self, task: PersistedTask) -> None:
        with BlockingFileLock(self.lock_path):
            tasks = [
                t for t in self._read() if (t.model_id, t.version) != (task.model_id, task.version)
            ]
            tasks.append(task)
            self._write(tasks)

    def drop(self, model_id: str, version: str) -> None:
        with BlockingFileLock(self.lock_path):
            tasks = self._read()
            kept = [t for t in tasks if (t.model_id, t.version) != (model_id, version)]
            if len(kept) != len(tasks):
                self._write(kept)

    def _read(self, set_aside: bool = True) -> list[PersistedTask]:
        tasks = self._read_tasks(set_aside)
        if not any(t.url for t in tasks):
            return tasks
        secrets = self._read_secrets()
        return [
            t.model_copy(update={"url": secrets[t.task_id]}) if t.task_id in secrets else t
            for t in tasks
        ]

    def _read_secrets(self) -> dict[str, str]:
        try:
            raw = read_json(self.secrets_path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("tasks.secrets.json unreadable: %.200s", exc)
            return {}
        if not isinstance(raw, dict):
            return {}
        return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}

    def _read_tasks(self, set_aside: bool) -> list[PersistedTask]:
        try:
            return _persisted_list().validate_python(read_json(self.path))
        except FileNotFoundError:
            return []
        except PermissionError as exc:
            log.warning("cannot read tasks.json, starting without it: %s", exc)
            return []
        except (OSError, ValueError, ValidationError, RecursionError) as exc:
            # Kept for a human as tasks.json.damaged-<time>; the next save starts afresh.
            aside = self.fs.set_aside(self.path) if set_aside else None
            log.warning("tasks.json unreadable, starting without it (kept as %s): %.200s",
                        aside.name if aside else "nothing", exc)  # fmt: skip
            return []

    def _write(self, tasks: list[PersistedTask]) -> None:
        secrets = {
            t.task_id: t.url for t in tasks if t.url is not None and redact_url(t.url) != t.url
        }
        if secrets:  # first: a crash between the two writes leaves a spare secret, no loss
            atomic_write_bytes(self.secrets_path, json.dumps(secrets).encode(), mode=0o600)
        shown = [t.model_copy(update={"url": redact_url(t.url)}) if t.url else t for t in tasks]
        data = _persisted_list().dump_json(shown, by_alias=True, indent=2)
        atomic_write_bytes(self.path, data)
        if not secrets:
            self.secrets_path.unlink(missing_ok=True)
