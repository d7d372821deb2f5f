"""Small durable-filesystem helpers (blocking: call through ``anyio.to_thread``)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from sidecar.store.homefs import MAX_STATE_BYTES, HomeFS


def fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Readers see the old content or the new one, never a torn file, even after a crash.
    Never through a link planted in the home (see ``sidecar.store.homefs``). Only the user
    can read it (0600), as with mkstemp before."""
    HomeFS.of(path).atomic_write(path, data, mode)


def atomic_write_json(path: Path, document: Any) -> None:
    atomic_write_bytes(path, json.dumps(document, indent=2, sort_keys=True).encode())


_WRITER = re.compile(r"\.(\d+)-[a-z0-9_]+\.tmp$")  # mkstemp's letters after the pid
NO_WRITE_TAKES = 3600.0  # seconds: a temp file this old is a leftover, whoever wrote it


def sweep_temp_files(folder: Path, pattern: str, recursive: bool = False) -> list[Path]:
    """Remove temp files that a kill left between writing and renaming, but not those of
    a live process: another sidecar starting on this home may be mid-write (sweeping its
    file made its rename fail, and its start with it)."""
    removed = []
    found = folder.rglob(pattern) if recursive else folder.glob(pattern)
    for path in found if folder.is_dir() else ():
        try:
            if _may_be_in_progress(path):
                continue
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def _may_be_in_progress(path: Path) -> bool:
    match = _WRITER.search(path.name)
    if match is None:
        return False  # named before writers were recorded
    age = time.time() - path.stat().st_mtime
    if age > NO_WRITE_TAKES:
        return False  # its pid may since have gone to another process
    if os.name == "nt":  # os.kill would terminate it: trust a shorter age instead
        return age < 60
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    return True


def read_json(path: Path, limit: int = MAX_STATE_BYTES) -> Any:
    """A state file: FileNotFoundError if absent, DamagedFile (a ValueError) if it is not
    a regular file, is larger than ``limit`` or nests too deep; never hangs on a FIFO."""
    return HomeFS.of(path).read_json(path, limit)
