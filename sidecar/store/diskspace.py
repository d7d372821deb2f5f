"""Free space, and the boundary where a full disk becomes INSUFFICIENT_DISK_SPACE."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sidecar.errors import InsufficientDiskSpace

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The full-disk error behind ``exc``, if any: inside an exception group, or as the
    cause or context of another error (a failed cleanup after ENOSPC, say), so that a
    secondary error never hides that the disk is full."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL:
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return None


def as_disk_full(exc: BaseException) -> InsufficientDiskSpace | None:
    """The domain error for a full disk (ENOSPC, EDQUOT), else None."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return InsufficientDiskSpace(f"the disk is full: {exc}")
    return None


@contextmanager
def map_disk_full(where: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise InsufficientDiskSpace(f"the disk under {where} is full: {exc}") from exc
        raise
