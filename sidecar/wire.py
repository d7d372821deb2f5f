"""The wire format: every method's params and result, and the notifications (the files
the sidecar keeps on disk are in ``sidecar.wire_files``). ``schemas/`` is generated from
these models.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from sidecar.config import OPTION, SignaturePolicyName
from sidecar.redact import redact_url


class WireModel(BaseModel):
    # defer_build: a schema is built when a model is first used, not at import (start-up).
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True
    )

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class LenientWireModel(WireModel):
    # On-disk documents tolerate fields from newer versions (forward compatibility).
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", defer_build=True
    )


class TaskState(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    PAUSED = "paused"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in {TaskState.READY, TaskState.FAILED, TaskState.CANCELLED}


UnavailableReason = Literal[
    "not_installed", "queued", "downloading", "verifying", "paused", "incomplete", "failed",
    "damaged", "quota",
]  # fmt: skip
# ``reason`` of the other errors: REPOSITORY_UNAVAILABLE / SCHEDULER_UNAVAILABLE offline,
# moveStore's refusals (INVALID_STATE, INSUFFICIENT_DISK_SPACE), importModel's.
ErrorReason = Literal[
    "offline", "target_inside_home", "target_not_empty", "target_not_folder", "no_space",
    "cross_device", "move_in_progress", "already_installed",
]  # fmt: skip
# SIGNATURE_INVALID's data.reason.
SignatureReason = Literal["unsigned", "bad_signature", "unknown_key", "rollback", "expired"]
ModelState = Literal[
    "not_installed", "queued", "downloading", "verifying", "paused", "ready", "incomplete",
    "failed", "removed", "damaged",
]  # fmt: skip


class TaskError(WireModel):
    code: str
    message: str
    # As in the error's data, for a code that has several causes: the app tells a full
    # disk (no_space) from the store's quota (quota), say.
    reason: UnavailableReason | ErrorReason | SignatureReason | None = None


class Task(WireModel):
    task_id: str
    model_id: str
    version: str
    state: TaskState
    bytes_done: int
    bytes_total: int
    speed_bps: float
    eta_seconds: float | None
    files_done: int
    files_total: int
    error: TaskError | None
    waiting_for: str | None = Field(
        default=None, description="What a queued task waits for, in words (another task, a lock)."
    )
    history: list[TaskError] = Field(
        default=[],
        description="Problems the task got over, oldest first (the last 20): a piece that "
        "did not match its hash and was fetched again, a source dropped for bad pieces.",
    )


# --- params ---------------------------------------------------------------------------

Name = Annotated[str, Field(min_length=1, max_length=128)]


class NoParams(WireModel):
    pass


class GetModelPathParams(WireModel):
    model_id: Name
    version: Name | None = None
    lease: bool = Field(
        default=False,
        description="Hold the version in use (never evicted or pruned) until releaseModel "
        "with the answer's leaseId, or until this client disconnects.",
    )


class InstallParams(WireModel):
    model_id: Name
    version: Name | None = None
    dependencies: bool = True
    repair: bool = Field(
        default=False,
        description="For an installed version that verify found damaged: fetch again only "
        "the files that are wrong, keep the rest.",
    )


class ListModelsParams(WireModel):
    refresh: bool = False


class TaskIdParams(WireModel):
    task_id: Annotated[str, Field(min_length=1, max_length=64)]


class ModelRefParams(WireModel):
    model_id: Name
    version: Name | None = None


class RankingParams(WireModel):
    limit: Annotated[int, Field(ge=1, le=1000)] = 20
    refresh: bool = False


class InstallUrlParams(WireModel):
    url: Annotated[str, Field(min_length=1, max_length=8192)]
    filename: Name | None = None
    mode: Literal["llm", "embed", "rerank"] | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = None
    model_id: Name | None = None


# The command line's bounds (sidecar.config.OPTIONS); strict, so `true` is not a 1.
_Rate = Annotated[
    int,
    Field(
        ge=OPTION["max_bytes_per_second"].low,
        le=OPTION["max_bytes_per_second"].high,
        strict=True,
    ),
]
_Tasks = Annotated[
    int,
    Field(
        ge=OPTION["max_concurrent_tasks"].low,
        le=OPTION["max_concurrent_tasks"].high,
        strict=True,
    ),
]
_Connections = Annotated[
    int,
    Field(
        ge=OPTION["max_connections_per_file"].low,
        le=OPTION["max_connections_per_file"].high,
        strict=True,
    ),
]


_StoreBytes = Annotated[
    int,
    Field(
        ge=OPTION["max_store_bytes"].low,
        le=OPTION["max_store_bytes"].high,
        strict=True,
        description="quota for models/ plus partial downloads; 0: none",
    ),
]


class SetLimitsParams(WireModel):
    """Absent fields stay as they are; ``maxBytesPerSecond: 0`` removes the cap.
    Strict integers: ``true`` would otherwise be a cap of 1 B/s."""

    max_bytes_per_second: _Rate | None = None
    max_concurrent_tasks: _Tasks | None = None
    max_connections_per_file: _Connections | None = None
    max_store_bytes: _StoreBytes | None = None


class SetNetworkParams(WireModel):
    """What the app's main process resolved for the repository (``session.resolveProxy``):
    a proxy URL ``http://[user:password@]host:port``, ``"direct"`` for none, or null to
    let the environment (HTTPS_PROXY, NO_PROXY, ...) decide again."""

    proxy: Annotated[str, Field(max_length=2048)] | None

    @field_validator("proxy")
    @classmethod
    def _usable(cls, value: str | None) -> str | None:
        if value is None or value.strip() in ("", "direct"):
            return value
        candidate = value.strip() if "://" in value else "http://" + value.strip()
        parts = urlsplit(candidate)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("give http://[user:password@]host:port, or 'direct'")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ValueError("the proxy's port is not a number") from exc
        return value


# --- results --------------------------------------------------------------------------


class SignaturePolicy(WireModel):
    """What a catalog or manifest must carry to be used (--signatures, --trusted-key)."""

    policy: SignaturePolicyName = Field(
        description="enforce: refused unless signed by a trusted key; warn: logged and "
        "used; off: signatures are not fetched"
    )
    trusted_key_ids: list[str] = Field(
        description="the keyId of each trusted public key, as signature files and "
        "SIGNATURE_INVALID messages name them (no key material)"
    )


class InfoResult(WireModel):
    version: str
    protocol_version: int
    pid: int  # the process the app started: the one to signal
    worker_pid: int | None = Field(
        description="the transfer worker moving file bodies; null until the first download"
    )
    home: str
    repositories: list[str]
    signatures: SignaturePolicy

    @field_validator("repositories")
    @classmethod
    def _without_secrets(cls, urls: list[str]) -> list[str]:
        return [redact_url(url) for url in urls]  # user:password@ in a repository URL


class ModelPathResult(WireModel):
    model_id: str
    version: str
    path: str
    lease_id: str | None = Field(
        default=None, description="Only when asked for a lease: pass it to releaseModel."
    )

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)  # no leaseId


class InstallResult(WireModel):
    task_id: str | None
    model_id: str
    version: str
    state: TaskState


class InstalledVersionInfo(WireModel):
    version: str
    state: ModelState
    path: str
    size_bytes: int


class ModelInfo(WireModel):
    id: str
    name: str
    task: str
    languages: list[str]
    default_version: str | None
    versions: list[str]
    installed: list[InstalledVersionInfo]
    state: ModelState
    update_available: bool
    in_catalog: bool


class ListModelsResult(WireModel):
    models: list[ModelInfo]
    stale: bool = Field(description="True when the repository could not be reached.")
    fetched_at: str | None = Field(
        default=None, description="When the catalog shown was fetched (UTC); null: never."
    )
    offline: bool = Field(default=False, description="The sidecar runs with --offline.")


class ListTasksResult(WireModel):
    tasks: list[Task]


class RemoveResult(WireModel):
    model_id: str
    removed: list[str]


class VerifyProblem(WireModel):
    path: str
    problem: Literal["missing", "size_mismatch", "checksum_mismatch"]


class VerifyResult(WireModel):
    ok: bool
    model_id: str
    version: str
    problems: list[VerifyProblem]


class RankingItem(WireModel):
    model_id: str
    request_count: int
    rank: int
    installed: bool


class RankingResult(WireModel):
    items: list[RankingItem]
    stale: bool
    fetched_at: str | None


class LimitsResult(WireModel):
    max_bytes_per_second: int = Field(description="0: no cap")
    max_concurrent_tasks: int
    max_connections_per_file: int
    max_store_bytes: int = Field(default=0, description="0: no quota")


class NetworkResult(WireModel):
    proxy: str | None = Field(description="in force now, password masked; null: environment")


class ShutdownResult(WireModel):
    stopping: bool


# --- notifications --------------------------------------------------------------------


class ModelsChanged(WireModel):
    model_id: str
    version: str
    state: ModelState
    reason: Literal["evicted", "pruned"] | None = Field(
        default=None, description="Why a version was removed when no client asked for it."
    )
    path: str | None = Field(
        default=None,
        description="The version's folder, when it is new or changed (importModel, moveStore).",
    )

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)  # reason, path


class ErrorData(WireModel):
    """``data`` of every sidecar error response; MODEL_NOT_AVAILABLE adds its fields."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", defer_build=True
    )
    code: str
    model_id: str | None = None
    version: str | None = None
    reason: UnavailableReason | ErrorReason | SignatureReason | None = None
    # SIGNATURE_INVALID: the repository host whose catalog or manifest was refused.
    host: str | None = None
