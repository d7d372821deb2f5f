"""What the store takes on disk (blocking: run in a thread). Installed versions are
measured by walking their folders (a file hard-linked into two versions is one inode,
counted once in the totals); ``temp/`` holds the rest: partial downloads with their
records, staging folders an install left before its rename, and trash (a removed
version, or a detached part, a kill left half-deleted). Lock files (a few bytes while
a lock is held) are not counted."""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

import portalocker

from sidecar.store.fsutil import _may_be_in_progress
from sidecar.store.homefs import is_link
from sidecar.store.layout import HomeLayout
from sidecar.store.locks import lock_is_stale, read_lock_info

Inode = tuple[int, int]
Key = tuple[str, str]
_TRASH = re.compile(r"^(?P<key>.+)\.(?:removed|old)-[0-9a-f]{8}$")


@dataclass
class VersionFiles:
    """The regular files of one version folder, by inode: (size, links)."""

    inodes: dict[Inode, tuple[int, int]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(size for size, _ in self.inodes.values())


@dataclass(frozen=True)
class Leftover:
    kind: str  # part | staging | trash
    path: Path
    key: str | None  # id@version of the install it belongs to, as in its name
    size: int
    mtime: float
    busy: bool

    @property
    def model_and_version(self) -> tuple[str | None, str | None]:
        if self.key is None or "@~" in self.key:  # a long key keeps only a digest
            return (self.key.split("@", 1)[0] if self.key else None), None
        model_id, _, version = self.key.partition("@")
        return model_id, version


def tree_files(folder: Path) -> dict[Inode, tuple[int, int]]:
    """Regular files under ``folder``, never through a link."""
    found: dict[Inode, tuple[int, int]] = {}
    for top, _dirs, files in os.walk(folder, followlinks=False):  # never enters a link
        for name in files:
            try:
                info = (Path(top) / name).lstat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found[(info.st_dev, info.st_ino)] = (info.st_size, info.st_nlink)
    return found


def scan_versions(layout: HomeLayout) -> dict[Key, VersionFiles]:
    """Every real version folder under ``models/``, registered or not."""
    found: dict[Key, VersionFiles] = {}
    for model_dir in _real_dirs(layout.models):
        for version_dir in _real_dirs(model_dir):
            found[(model_dir.name, version_dir.name)] = VersionFiles(tree_files(version_dir))
    return found


def shared_inodes(versions: dict[Key, VersionFiles]) -> set[Inode]:
    seen: dict[Inode, int] = {}
    for files in versions.values():
        for inode in files.inodes:
            seen[inode] = seen.get(inode, 0) + 1
    return {inode for inode, count in seen.items() if count > 1}


def models_bytes(versions: dict[Key, VersionFiles]) -> int:
    distinct: dict[Inode, int] = {}
    for files in versions.values():
        distinct.update({inode: size for inode, (size, _) in files.inodes.items()})
    return sum(distinct.values())


def freed_by(versions: dict[Key, VersionFiles], removed: set[Key]) -> int:
    """Bytes that removing all of ``removed`` gives back: files none of the other
    versions still link (a link from outside the store keeps its file too)."""
    kept: set[Inode] = set()
    for key, files in versions.items():
        if key not in removed:
            kept.update(files.inodes)
    count: dict[Inode, int] = {}
    sizes: dict[Inode, tuple[int, int]] = {}
    for key in removed:
        for inode, info in versions.get(key, VersionFiles()).inodes.items():
            count[inode] = count.get(inode, 0) + 1
            sizes[inode] = info
    return sum(
        size
        for inode, (size, links) in sizes.items()
        if inode not in kept and count[inode] >= links
    )


def scan_leftovers(layout: HomeLayout, busy_keys: set[str]) -> list[Leftover]:
    """Everything in ``temp/`` but lock files. ``busy_keys``: id@version keys of tasks
    this process runs (paused ones too); a task lock or a part lock held by a live
    process makes its files busy as well."""
    try:
        entries = sorted(layout.temp.iterdir())
    except OSError:
        return []
    names = {entry.name for entry in entries}
    found: list[Leftover] = []
    for entry in entries:
        name = entry.name
        try:
            info = entry.lstat()
        except OSError:
            continue
        if name.endswith(".lock"):
            continue
        if name.endswith(".part.json") and name[: -len(".json")] in names:
            continue  # counted with its part
        if name.endswith((".part", ".part.json")):
            part = entry if name.endswith(".part") else entry.with_name(name[: -len(".json")])
            key = _key_of_part(part.name)
            size, mtime = _size_and_mtime([part, part.with_name(part.name + ".json")])
            busy = (
                key in busy_keys
                or lock_held(part.with_name(part.name + ".lock"))
                or lock_held(layout.task_locks / f"{key}.lock")
            )
            found.append(Leftover("part", part, key, size, mtime, busy))
        elif name.endswith(".staging") and stat.S_ISDIR(info.st_mode) and not is_link(info):
            key = name[: -len(".staging")]
            size = sum(size for size, _ in tree_files(entry).values())
            busy = key in busy_keys or lock_held(layout.task_locks / f"{key}.lock")
            found.append(Leftover("staging", entry, key, size, info.st_mtime, busy))
        else:
            match = _TRASH.match(name)
            is_dir = stat.S_ISDIR(info.st_mode) and not is_link(info)
            size = sum(s for s, _ in tree_files(entry).values()) if is_dir else _file_size(info)
            busy = not is_dir and _may_be_in_progress(entry)  # an atomic write going on
            trash_key = match.group("key") if match else None
            found.append(Leftover("trash", entry, trash_key, size, info.st_mtime, busy))
    return found


def store_bytes(layout: HomeLayout) -> int:
    """What the quota counts: installed files once each, plus everything in temp/."""
    return models_bytes(scan_versions(layout)) + sum(
        item.size for item in scan_leftovers(layout, set())
    )


def free_bytes(layout: HomeLayout) -> int:
    try:
        return shutil.disk_usage(layout.root).free
    except OSError:
        return 0


def remove_leftover(item: Leftover) -> None:
    if item.kind == "part":
        item.path.unlink(missing_ok=True)
        item.path.with_name(item.path.name + ".json").unlink(missing_ok=True)
    elif item.path.is_dir() and not item.path.is_symlink():
        shutil.rmtree(item.path, ignore_errors=True)
    else:
        item.path.unlink(missing_ok=True)


def lock_held(path: Path) -> bool:
    """A live process holds the lock at ``path`` (an OS lock, released when its holder
    dies; a holder that stopped refreshing it past its timeout counts as gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False  # no lock file: nobody holds it
    with os.fdopen(fd, "rb") as handle:
        try:
            portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            return not lock_is_stale(read_lock_info(path))
        portalocker.unlock(handle)
        return False


def _key_of_part(name: str) -> str:
    # <id>@<version>@<encoded path>.part, or <id>@~<digest>@<...>.part for long keys
    model_id, _, rest = name.partition("@")
    version = rest.partition("@")[0]
    return f"{model_id}@{version}"


def _size_and_mtime(paths: list[Path]) -> tuple[int, float]:
    size, mtime = 0, 0.0
    for path in paths:
        try:
            info = path.lstat()
        except OSError:
            continue
        size += _file_size(info)
        mtime = max(mtime, info.st_mtime)
    return size, mtime


def _file_size(info: os.stat_result) -> int:
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _real_dirs(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            info = entry.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and not is_link(info):
            found.append(entry)
    return found
