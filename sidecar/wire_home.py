"""The wire models of the store's relocation and import (``moveStore``, ``importModel``).
``schemas/`` is generated from these as from ``sidecar.wire``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from sidecar.wire import Name, WireModel

FolderPath = Annotated[str, Field(min_length=1, max_length=4096)]
ImportMode = Literal["copy", "hardlink", "move"]


class MoveStoreParams(WireModel):
    to: FolderPath = Field(
        description="The new home: a folder that does not exist or is empty, not inside "
        "the current home. Another drive works too (copied, verified, then switched)."
    )


class MoveStoreResult(WireModel):
    home: str = Field(description="The home from now on: store it and pass it as --home.")
    previous_home: str
    method: Literal["rename", "copy"] = Field(
        description="rename: same volume, one step; copy: another volume, copied, "
        "verified, then switched"
    )
    bytes_copied: int = Field(description="0 for a rename")
    files: int = Field(description="files in the home that moved")
    resumed_tasks: list[str] = Field(description="downloads paused for the move, going on")


class MoveProgress(WireModel):
    """``store.moveProgress``: a move across drives copies, then verifies, every byte."""

    to: str
    phase: Literal["copying", "verifying"]
    bytes_done: int
    bytes_total: int


class ImportModelParams(WireModel):
    model_id: Name
    version: Name
    path: FolderPath = Field(description="The folder holding the model's files.")
    mode: ImportMode = Field(
        default="copy",
        description="copy: the files stay; hardlink: linked, no extra space (same volume "
        "only); move: the files move into the home",
    )


class ImportModelResult(WireModel):
    model_id: str
    version: str
    path: str = Field(description="The installed folder (as getModelPath answers)")
    mode: ImportMode
    files: int
    size_bytes: int
    manifest_source: Literal["catalog", "file"] = Field(
        description="catalog: from the repository (or its cache); file: the manifest.json "
        "beside the files"
    )
