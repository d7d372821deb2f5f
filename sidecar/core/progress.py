"""What a task's progress may claim: the bytes on disk that a resume will keep (its
speed is ``sidecar.speed``'s)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sidecar.store.layout import HomeLayout
from sidecar.transfer.plan import merge
from sidecar.transfer.record import PartRecord

MAX_RECORD_BYTES = 16 * 1024 * 1024


def verified_part_bytes(part: Path, expected_size: int | None = None) -> int:
    """Bytes of ``part`` a resume keeps (blocking). A part written in segments is
    pre-sized to the whole file: only the ranges its record lists count. A part written
    as one stream is its prefix, which its record (written before the first byte)
    vouches for. A part without a record is one a segmented download pre-sized and
    never recorded: nothing of it counts."""
    try:
        info = os.stat(part, follow_symlinks=False)
    except OSError:
        return 0
    if not stat.S_ISREG(info.st_mode):
        return 0
    record = _read_record(part.with_name(part.name + ".json"))
    if record is None:
        return 0
    size = info.st_size
    if record.done is not None:
        counted = sum(end - start for start, end in merge(list(record.done)))
        size = min(size, counted)
    if expected_size is not None:
        size = min(size, expected_size)
    return max(0, size)


def _read_record(path: Path) -> PartRecord | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
        if len(data) > MAX_RECORD_BYTES:
            return None
        return PartRecord.from_json(data)
    except (OSError, ValueError):
        return None


def version_bytes_on_disk(layout: HomeLayout, model_id: str, version: str) -> int:
    """Verified bytes of every part of ``model_id@version`` (blocking): what a task that
    has not read its manifest yet can already show."""
    prefix = layout.part_prefix(model_id, version)
    try:
        paths = list(layout.temp.iterdir())
    except OSError:
        return 0
    return sum(
        verified_part_bytes(path)
        for path in paths
        if path.name.startswith(prefix) and path.name.endswith(".part")
    )
