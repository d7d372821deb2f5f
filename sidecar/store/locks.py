"""Cross-process locks on the home: real OS locks (released when a process dies),
with a JSON body that says who holds them.

Blocking calls: use them through ``anyio.to_thread``.

The holder unlinks the lock file before unlocking it; a contender that locked a
file checks the path still names the inode it locked, so a lock is never held on
an unlinked file. A holder that hangs (its lock not refreshed past its timeout)
is broken by unlinking its file: the next contender locks a fresh inode.

Lock files are opened through ``HomeFS``: a link planted in a lock's place is removed
(never its target) and a fresh file is locked.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

import portalocker

from sidecar.store.homefs import HomeFS
from sidecar.wire_files import LockInfo

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


def pid_alive(pid: int) -> bool:
    import psutil  # ~10 ms to import: not before the first answer, which needs none

    try:
        return psutil.pid_exists(pid)
    except (OSError, ValueError):
        return False


def lock_is_stale(info: LockInfo | None, now: int | None = None) -> bool:
    if info is None:
        return False
    if info.pid != os.getpid() and not pid_alive(info.pid):
        return True
    return (now if now is not None else now_ms()) - info.timestamp > info.timeout


def read_lock_info(path: Path) -> LockInfo | None:
    try:
        return LockInfo.model_validate_json(HomeFS.of(path).read_bytes(path, MAX_LOCK_BYTES))
    except (OSError, ValueError):
        return None


MAX_LOCK_BYTES = 64 * 1024


def open_lock_file(path: Path) -> IO[bytes]:
    """The lock file at ``path``, created if needed, never through a link."""
    fs = HomeFS.of(path)
    fs.makedirs(path.parent)
    if fs.drop_link(path):
        log.warning("removed a link planted as lock file %s", path)
    return fs.open_file(path, "a+b")


class OwnedLock:
    """An exclusive, non-blocking, inode-checked lock file carrying a LockInfo."""

    def __init__(self, path: Path, model_id: str, version: str, timeout_ms: int) -> None:
        self.path = path
        self.model_id = model_id
        self.version = version
        self.timeout_ms = timeout_ms
        self._handle: IO[bytes] | None = None
        self.took_over = False  # we broke a hung or dead holder's lock to get this one

    def try_acquire(self) -> bool:
        """True if we now hold it; False if a live holder does (see ``holder()``)."""
        if self._handle is not None:
            return True
        for _ in range(5):
            handle = open_lock_file(self.path)
            try:
                portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
            except portalocker.exceptions.LockException:
                handle.close()
                if self._break_if_stale():
                    continue
                return False
            if not self._same_file(handle):
                portalocker.unlock(handle)
                handle.close()
                continue
            self._handle = handle
            self._write_info()
            return True
        return False

    def holder(self) -> LockInfo | None:
        return read_lock_info(self.path)

    def still_held(self) -> bool:
        """False once another process broke our lock (we hung past its timeout)."""
        return self._handle is not None and self._same_file(self._handle)

    def refresh(self) -> None:
        if self._handle is not None:
            self._write_info()

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            if self._same_file(handle):
                self.path.unlink(missing_ok=True)
            portalocker.unlock(handle)
        finally:
            handle.close()

    def _same_file(self, handle: IO[bytes]) -> bool:
        try:
            on_disk = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(handle.fileno())
        return (on_disk.st_ino, on_disk.st_dev) == (mine.st_ino, mine.st_dev)

    def _write_info(self) -> None:
        assert self._handle is not None
        info = LockInfo(
            pid=os.getpid(),
            timestamp=now_ms(),
            model_id=self.model_id,
            version=self.version,
            timeout=self.timeout_ms,
        )
        data = json.dumps(info.wire()).encode()
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(data)
        self._handle.flush()

    def _break_if_stale(self) -> bool:
        info = self.holder()
        if info is None:
            # Unreadable (a holder cut between truncate and write, or another format):
            # the file's age against our own timeout decides.
            try:
                age_ms = now_ms() - int(self.path.lstat().st_mtime * 1000)
            except FileNotFoundError:
                return True
            if age_ms <= self.timeout_ms:
                return False
        elif not lock_is_stale(info):
            return False
        log.warning("breaking stale lock %s held by %s", self.path.name, info)
        self.path.unlink(missing_ok=True)
        self.took_over = True
        return True


def clean_stale_lock_files(folder: Path) -> list[Path]:
    """Remove lock files nobody holds (their process died) or whose holder hung."""
    removed = []
    for path in folder.glob("*.lock") if folder.is_dir() else ():
        try:
            with open_lock_file(path) as handle:
                try:
                    portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
                except portalocker.exceptions.LockException:
                    if not lock_is_stale(read_lock_info(path)):
                        continue
                path.unlink(missing_ok=True)
                removed.append(path)
        except OSError as exc:
            log.debug("could not check lock %s: %s", path, exc)
    return removed


class BlockingFileLock:
    """A short-held lock (the registry's): waits up to ``timeout`` seconds."""

    CHECK_INTERVAL = 0.01

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> BlockingFileLock:
        deadline = time.monotonic() + self.timeout
        while True:
            handle = open_lock_file(self.path)
            try:
                portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
            except portalocker.exceptions.LockException:
                handle.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(self.CHECK_INTERVAL)
                continue
            self._handle = handle
            return self

    def __exit__(self, *exc: Any) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                portalocker.unlock(handle)
            finally:
                handle.close()
