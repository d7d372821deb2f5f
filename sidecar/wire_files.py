"""The files the sidecar keeps in its home: registry.json, the task locks, tasks.json.
Lenient: a file written by a newer version keeps the fields this one does not know.
(``schemas/files/`` is generated from them, as from ``sidecar.wire``.)"""

from __future__ import annotations

from typing import Any, Literal

from sidecar.wire import LenientWireModel, TaskError, TaskState


class RegistryFile(LenientWireModel):
    path: str
    size_bytes: int
    sha256: str


class InstalledVersion(LenientWireModel):
    version: str
    state: Literal["ready", "incomplete", "damaged"]
    installed_at: str
    size_bytes: int
    checksum_sha256: str | None = None
    files: list[RegistryFile]
    requires: list[dict[str, str | None]] = []
    source: str | None = None
    extra: dict[str, Any] = {}
    pinned: bool = False  # never evicted by the quota nor removed by prune


class InstalledModel(LenientWireModel):
    name: str = ""
    task: str = ""
    versions: dict[str, InstalledVersion] = {}
    extra: dict[str, Any] = {}


class RegistryDocument(LenientWireModel):
    schema_version: Literal[1] = 1
    models: dict[str, InstalledModel] = {}
    extra: dict[str, Any] = {}


class LockInfo(LenientWireModel):
    """Content of a task lock file. Times in ms since the epoch / ms."""

    pid: int
    timestamp: int
    model_id: str
    version: str
    timeout: int


class PersistedTask(LenientWireModel):
    """An unfinished task, saved so it resumes after a restart."""

    task_id: str
    model_id: str
    version: str
    state: TaskState
    url: str | None = None
    filename: str | None = None
    mode: str | None = None
    sha256: str | None = None
    repair: bool = False
    bytes_total: int = 0  # shown by `listTasks` before the manifest is read again
    files_total: int = 0
    error: TaskError | None = None  # a failed task kept because its parts are on disk
