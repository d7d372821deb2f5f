"""Free space, and the boundary where a full disk becomes INSUFFICIENT_DISK_SPACE."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sidecar.errors import InsufficientDiskSpace, find_cause

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The full-disk error behind ``exc``, however deep a secondary error buried it."""
    return find_cause(exc, OSError, lambda error: error.errno in _FULL)


def as_disk_full(exc: BaseException) -> InsufficientDiskSpace | None:
    """The domain error for a full disk (ENOSPC, EDQUOT), else None."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return InsufficientDiskSpace(f"the disk is full: {exc}", reason="no_space")
    return None


@contextmanager
def map_disk_full(where: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise InsufficientDiskSpace(
                f"the disk under {where} is full: {exc}", reason="no_space"
            ) from exc
        raise
