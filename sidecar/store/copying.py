"""A move across volumes (``sidecar.store.relocate``): every regular file of the home
copied (hashed as it is read), fsynced, and verified by hashing the copy; a rerun keeps
what an earlier attempt copied, checked by the same verify. The forwarding records and
the owner's lock and socket are not copied.

Blocking: run in a thread."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from sidecar.errors import ChecksumMismatch, InsufficientDiskSpace
from sidecar.store.forwarding import FORWARD, INCOMING, OWNER_FILES
from sidecar.store.fsutil import fsync_dir
from sidecar.transfer.hashing import READ_SIZE, sha256_file

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # phase ("copying", "verifying"), done, total
NOT_COPIED = (FORWARD, INCOMING, ".move-probe", *OWNER_FILES)  # at the home's top


def copy_verified(
    home: Path, target: Path, progress: Progress, after_file: Callable[[], None]
) -> tuple[int, int]:
    """Copy every regular file, then hash each copy against its source."""
    needed = 0
    plan: list[Path] = []
    folders: list[Path] = []
    for folder, dirs, files in os.walk(home):
        relative = Path(folder).relative_to(home)
        if relative == Path():
            dirs[:] = [d for d in dirs if d not in NOT_COPIED]
            files = [f for f in files if f not in NOT_COPIED]
        folders.append(relative)
        for name in files:
            source = Path(folder) / name
            info = os.lstat(source)
            if not stat.S_ISREG(info.st_mode):
                log.warning("not moving %s: not a regular file", source)
                continue
            plan.append(relative / name)
            copy = target / relative / name
            if not copy.exists() or copy.stat().st_size != info.st_size:
                needed += info.st_size
    free = shutil.disk_usage(target).free
    if needed > free:
        raise InsufficientDiskSpace(
            f"moving the model home needs {needed} bytes on {target}'s drive, {free} are free",
            reason="no_space",
            path=str(target),
            neededBytes=needed,
            freeBytes=free,
        )
    for relative in folders:  # only now: a refusal for room leaves the target as it was
        (target / relative).mkdir(exist_ok=True)
    _drop_extras(target, {str(p) for p in plan})
    hashes: dict[Path, str] = {}
    copied = 0

    def copying(count: int) -> None:
        nonlocal copied
        copied += count
        progress("copying", copied, needed)

    for relative in plan:
        source, copy = home / relative, target / relative
        if copy.exists() and copy.stat().st_size == source.stat().st_size:
            continue  # an earlier attempt's copy: the verify below checks it
        hashes[relative] = copy_file(source, copy, copying)
        after_file()
    progress("copying", copied, copied)
    checked, total = 0, sum((home / r).stat().st_size for r in plan)
    for relative in plan:  # verify
        source, copy = home / relative, target / relative
        checked += source.stat().st_size
        progress("verifying", checked, total)
        expected = hashes.get(relative) or sha256_file(source)
        if sha256_file(copy) != expected:
            log.warning("the copy of %s differs: copying it again", relative)
            if copy_file(source, copy, lambda _: None) != sha256_file(copy):
                raise ChecksumMismatch(
                    f"cannot copy {source} to {copy} intact; the model home stays at {home}",
                    path=str(copy),
                )
    for folder, _, _ in os.walk(target):
        fsync_dir(Path(folder))
    return copied, len(plan)


def _drop_extras(target: Path, keep: set[str]) -> None:
    """Files an earlier attempt copied that the home no longer has (a finished part).
    The target's own records and owner files stay: they are not the home's."""
    for folder, _, files in os.walk(target):
        for name in files:
            relative = (Path(folder) / name).relative_to(target)
            if str(relative) not in keep and str(relative) not in NOT_COPIED:
                (Path(folder) / name).unlink(missing_ok=True)


def copy_file(source: Path, copy: Path, copied: Callable[[int], None]) -> str:
    hasher = hashlib.sha256()
    view = memoryview(bytearray(READ_SIZE))
    with open(source, "rb", buffering=0) as reader, open(copy, "wb", buffering=0) as writer:
        while count := reader.readinto(view):
            hasher.update(view[:count])
            writer.write(view[:count])
            copied(count)
        os.fsync(writer.fileno())
    shutil.copystat(source, copy)
    return hasher.hexdigest()
