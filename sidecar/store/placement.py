"""Move verified parts into ``models/`` so all files of a version appear together or
none do, and reuse identical files already installed. Blocking: run in a thread."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from sidecar.store.fsutil import fsync_dir
from sidecar.store.layout import HomeLayout

log = logging.getLogger(__name__)


def link_or_copy(source: Path, destination: Path) -> None:
    """Hard link when the filesystem allows it (no extra space), else copy."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temp = destination.parent / f".reuse-{uuid.uuid4().hex}.tmp"  # a 255-byte name has no room
    try:
        os.link(source, temp)
    except OSError:
        shutil.copyfile(source, temp)
    os.replace(temp, destination)


def move_into_place(
    layout: HomeLayout,
    model_id: str,
    version: str,
    parts: dict[str, Path],
    reused: dict[str, Path] | None = None,
) -> Path:
    """Assemble ``parts`` (relative path → verified .part) and ``reused`` (relative path
    → identical installed file, linked or copied) in a staging folder, then rename it
    to ``models/<id>/<version>`` in one step. An installed file is only ever linked
    into staging, never into a part: parts are written to, installed files never."""
    reused = reused or {}
    staging = layout.staging_dir(model_id, version)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for relative, part in parts.items():
        destination = staging.joinpath(*relative.split("/"))
        destination.parent.mkdir(parents=True, exist_ok=True)
        if relative in reused:
            link_or_copy(reused[relative], destination)
            continue
        os.replace(part, destination)
        part.with_name(part.name + ".json").unlink(missing_ok=True)
    for folder in {staging, *(staging.joinpath(*r.split("/")).parent for r in parts)}:
        fsync_dir(folder)
    final = layout.model_dir(model_id, version)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        # A damaged earlier copy: set it aside first so the rename below cannot fail.
        trash = layout.trash(model_id, version, "old")
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(staging, final)
    fsync_dir(final.parent)
    return final


def remove_version(layout: HomeLayout, model_id: str, version: str) -> None:
    final = layout.model_dir(model_id, version)
    if final.exists():
        trash = layout.trash(model_id, version, "removed")
        os.replace(final, trash)  # disappears at once for readers; deleting may take longer
        shutil.rmtree(trash, ignore_errors=True)
    layout.metadata_file(model_id, version).unlink(missing_ok=True)
    model_folder = final.parent
    if model_folder.is_dir() and not any(model_folder.iterdir()):
        model_folder.rmdir()


def remove_parts(layout: HomeLayout, model_id: str, version: str) -> None:
    prefix = layout.part_prefix(model_id, version)
    for path in layout.temp.glob(prefix + "*"):
        if path.name.endswith((".part", ".part.json")):
            path.unlink(missing_ok=True)
    staging = layout.staging_dir(model_id, version)
    if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)


def remove_legacy_parts(layout: HomeLayout) -> list[Path]:
    """Parts and staging folders named before names were joined with "@" (their
    owners cannot be told apart, so they cannot be resumed): free their space."""
    removed = []
    for path in layout.temp.iterdir() if layout.temp.is_dir() else ():  # a home we cannot write
        legacy = "@" not in path.name and path.name.endswith(
            (".part", ".part.json", ".part.lock", ".staging")
        )
        if legacy:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def discard_parts(parts: list[Path]) -> None:
    """Parts (and their records) that will not be fetched after all."""
    for part in parts:
        part.unlink(missing_ok=True)
        part.with_name(part.name + ".json").unlink(missing_ok=True)


def part_sizes(parts: dict[str, Path]) -> dict[str, int]:
    sizes = {}
    for relative, part in parts.items():
        try:
            sizes[relative] = part.stat().st_size
        except FileNotFoundError:
            sizes[relative] = 0
    return sizes


def recover_staging(
    layout: HomeLayout, model_id: str, version: str, parts: dict[str, Path]
) -> None:
    """A crash in the middle of ``move_into_place`` left verified files in staging: put
    them back as parts so nothing is downloaded twice."""
    staging = layout.staging_dir(model_id, version)
    if not staging.is_dir():
        return
    for relative, part in parts.items():
        staged = staging.joinpath(*relative.split("/"))
        # A staged file with other names is an installed file linked for reuse: it
        # must never become a part (parts are written to). It is linked again later.
        own = staged.is_file() and not staged.is_symlink() and staged.stat().st_nlink == 1
        if own and not part.exists():
            os.replace(staged, part)
    shutil.rmtree(staging, ignore_errors=True)
