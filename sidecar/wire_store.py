"""The wire of the store as users manage it: disk usage, prune, pin, leases.
(Part of the protocol like ``sidecar.wire``; ``schemas/`` is generated from both.)"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from sidecar.wire import ModelState, Name, WireModel

LeftoverKind = Literal["part", "staging", "trash"]


class DiskUsageParams(WireModel):
    pass


class VersionUsage(WireModel):
    model_id: str
    version: str
    state: ModelState
    size_bytes: int = Field(description="bytes of its files on disk now")
    shared_bytes: int = Field(
        description="of size_bytes, the bytes of files hard-linked with another version "
        "(counted once in the totals; removing this version does not free them)"
    )
    pinned: bool
    in_use: bool = Field(description="a client holds a lease on it (getModelPath lease)")
    last_used: str | None = Field(
        description="when getModelPath last handed it out (UTC ISO 8601); null: never"
    )
    installed_at: str


class LeftoverUsage(WireModel):
    kind: LeftoverKind = Field(
        description="part: a partial download (with its record); staging: an install cut "
        "before its rename; trash: a removed version a kill left half-deleted"
    )
    name: str = Field(description="its name in the home's temp folder")
    model_id: str | None
    version: str | None
    size_bytes: int
    modified_at: str
    busy: bool = Field(description="a live process is writing it (its lock is held)")


class DiskUsageResult(WireModel):
    versions: list[VersionUsage]
    leftovers: list[LeftoverUsage]
    models_bytes: int = Field(description="installed versions, shared files counted once")
    leftover_bytes: int
    total_bytes: int = Field(description="models_bytes + leftover_bytes: what the quota counts")
    free_bytes: int = Field(description="free on the volume of the home")
    max_store_bytes: int = Field(description="the quota; 0: none")


class PruneParams(WireModel):
    dry_run: bool = False
    older_than_days: Annotated[float, Field(ge=0, le=36500)] = Field(
        default=7.0, description="partial downloads untouched this long are removed"
    )


class PrunedItem(WireModel):
    kind: Literal["version", "part", "staging", "trash"]
    model_id: str | None
    version: str | None
    name: str = Field(description="ID@VERSION for a version, else its name in temp/")
    size_bytes: int = Field(description="bytes this frees (shared files not counted)")


class PruneResult(WireModel):
    dry_run: bool
    items: list[PrunedItem] = Field(description="removed, or with dryRun what would be")
    freed_bytes: int
    kept: list[str] = Field(
        description="what was left although it matched, and why (in words)", default=[]
    )


class PinParams(WireModel):
    model_id: Name
    version: Name | None = Field(default=None, description="default: the newest installed")


class PinResult(WireModel):
    model_id: str
    version: str
    pinned: bool


class ReleaseModelParams(WireModel):
    lease_id: Annotated[str, Field(min_length=1, max_length=64)]


class ReleaseModelResult(WireModel):
    released: bool = Field(description="false: no such lease (already released or gone)")
    model_id: str | None
    version: str | None
