"""Small durable-filesystem helpers (blocking: call through ``anyio.to_thread``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Readers see the old content or the new one, never a torn file, even after a crash."""
    try:
        _atomic_write(path, data)
    except FileNotFoundError:
        # Another process starting on this home swept our temp file as a leftover.
        _atomic_write(path, data)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, document: Any) -> None:
    atomic_write_bytes(path, json.dumps(document, indent=2, sort_keys=True).encode())


def sweep_temp_files(folder: Path, pattern: str, recursive: bool = False) -> list[Path]:
    """Remove temp files that a kill left between writing and renaming."""
    removed = []
    found = folder.rglob(pattern) if recursive else folder.glob(pattern)
    for path in found if folder.is_dir() else ():
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def read_json(path: Path) -> Any:
    with open(path, "rb") as handle:
        return json.loads(handle.read())
