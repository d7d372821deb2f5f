"""Who owns a home: the process holding ``<home>/engine.lock`` (an OS lock, released
when the process dies, however it dies). The lock file also says where the owner
listens, so a client finds it whatever its own environment (``XDG_RUNTIME_DIR`` of a
terminal may differ from the desktop's).

Blocking calls: use them through ``anyio.to_thread``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import portalocker

from sidecar.store.forwarding import LOCK_NAME, SOCKET_NAME
from sidecar.store.locks import now_ms, open_lock_file

log = logging.getLogger(__name__)

# sun_path holds 108 bytes on Linux, 104 on macOS and the BSDs, with its NUL.
MAX_SOCKET_PATH = 103


class EndpointUnsafe(OSError):
    """The private folder for a socket is not ours alone."""


@dataclass(frozen=True)
class OwnerInfo:
    pid: int
    endpoint: str
    host: str
    heartbeat_ms: int  # wall clock of the owner's last sign of life
    worker_pid: int | None = None  # its transfer worker, the process that writes parts

    def hung(self, timeout_ms: int) -> bool:
        return now_ms() - self.heartbeat_ms > timeout_ms

    def elsewhere(self) -> bool:
        """On another machine sharing the home: its socket is not reachable from here."""
        return self.host != socket.gethostname()


def _runtime_folder(home: Path) -> Path:
    """A private folder for the socket when the home's own path is too long:
    ``$XDG_RUNTIME_DIR`` (the user's, 0700 by definition) or ``/tmp/model-manager-<uid>``,
    made 0700 and checked to be ours (a planted folder or link is refused)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        base = Path(runtime) / "model-manager"
    else:  # /tmp itself, not $TMPDIR: short enough for a socket's path, and the same
        base = Path("/tmp") / f"model-manager-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    info = os.lstat(base)
    private = stat.S_ISDIR(info.st_mode) and not info.st_mode & 0o077
    if not private or info.st_uid != os.getuid():
        raise EndpointUnsafe(f"{base} is not a folder of this user's alone (mode 0700)")
    return base


def _digest(home: Path) -> str:
    return hashlib.sha256(os.fsencode(home)).hexdigest()[:24]


def endpoint_for(home: Path) -> str:
    """Where the owner of ``home`` listens: a socket in the home, else (a path too long
    for a socket address) one under a private runtime folder, named by the home's digest.
    On Windows, a named pipe named by the home's digest."""
    if sys.platform == "win32":
        from sidecar.engine.winpipe import with_new_key

        return with_new_key(rf"\\.\pipe\model-manager-{_digest(home)}")
    in_home = home / SOCKET_NAME
    if len(os.fsencode(in_home)) <= MAX_SOCKET_PATH:
        return str(in_home)
    return fallback_endpoint(home)


def fallback_endpoint(home: Path) -> str:
    """The socket's place when the home's own is too long or cannot be written."""
    if sys.platform == "win32":
        return endpoint_for(home)
    return str(_runtime_folder(home) / f"{_digest(home)}.sock")


def wait_for_writer_to_end(owner: OwnerInfo | None, timeout: float = 5.0) -> None:
    """After a takeover: the old owner's worker dies with it (PR_SET_PDEATHSIG on
    Linux, EOF elsewhere), but may finish a write meanwhile. Nothing of ours touches a
    part before that process is gone (blocking; bounded)."""
    if owner is None or owner.worker_pid is None:
        return
    import psutil  # only after a takeover: not at every start

    with contextlib.suppress(psutil.Error):
        worker = psutil.Process(owner.worker_pid)
        if "sidecar.transfer.worker" in " ".join(worker.cmdline()):  # not a reused pid
            worker.wait(timeout)


class EngineLock:
    """The home's ownership: held for the owner's whole life."""

    def __init__(self, home: Path, fallback: bool = False) -> None:
        """``fallback``: the lock of a home we may only read, in the runtime folder."""
        self.home = home
        self.fallback = fallback
        if fallback and sys.platform != "win32":
            self.path = _runtime_folder(home) / f"{_digest(home)}.lock"
        else:
            self.path = home / LOCK_NAME
        self.endpoint = ""
        self.previous: OwnerInfo | None = None
        self._handle: IO[bytes] | None = None

    def try_acquire(self, endpoint: Callable[[], str]) -> bool:
        """True if we now own the home (and the lock says we listen at ``endpoint()``,
        asked only then: a fallback folder is made by owners alone)."""
        if self._handle is not None:
            return True
        handle = self._open()
        try:
            portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            handle.close()
            return False
        self._handle = handle
        self.previous = self.owner()  # what the last owner left: its worker may still run
        try:
            self.announce(endpoint())
        except OSError:
            self.release()
            raise
        return True

    def _open(self) -> IO[bytes]:
        if not self.fallback:
            return open_lock_file(self.path)
        # Our private runtime folder, never through a link.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        return os.fdopen(fd, "r+b")

    def announce(self, endpoint: str) -> None:
        """Write down who owns the home and where it listens (we hold the lock)."""
        assert self._handle is not None
        self.endpoint = endpoint
        self.refresh()

    def refresh(self, worker_pid: int | None = None) -> None:
        """The heartbeat: an owner that stops refreshing (a hung machine, SIGSTOP) is
        worked around by the next sidecar, which runs an engine of its own."""
        if self._handle is None:
            return
        info = {
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "host": socket.gethostname(),
            "heartbeat": now_ms(),
            "worker": worker_pid,
        }
        # The lock file is opened for appending: emptied first, then written. A reader
        # in between sees nothing it can parse, and asks again.
        self._handle.truncate(0)
        self._handle.write(json.dumps(info).encode())
        self._handle.flush()

    def owner(self) -> OwnerInfo | None:
        """Who holds the lock, as it wrote itself down (None while it is being written)."""
        try:
            with open(self.path, "rb") as handle:
                data = json.loads(handle.read(64 * 1024))
            return OwnerInfo(
                pid=int(data["pid"]),
                endpoint=str(data["endpoint"]),
                host=str(data["host"]),
                heartbeat_ms=int(data["heartbeat"]),
                worker_pid=int(data["worker"]) if data.get("worker") else None,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            # Never unlinked: a contender may hold the file open, waiting for it.
            with contextlib.suppress(OSError):
                portalocker.unlock(handle)
            handle.close()
