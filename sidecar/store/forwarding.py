"""The records a move leaves (``sidecar.store.relocate``): ``moved-to.json`` in the old
home, the switch, and ``.moving-in.json`` in the target until the move is done; and
where they send a home, read only (``current_home``).

The owner's lock and socket (``sidecar.engine.ownership``) are named here too: they
belong to one folder and one process, so a move never carries them along; the owner
claims the new home's own before the switch."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from sidecar.store.fsutil import fsync_dir

FORWARD = "moved-to.json"
INCOMING = ".moving-in.json"
LOCK_NAME = "engine.lock"
SOCKET_NAME = "engine.sock"
OWNER_FILES = (LOCK_NAME, SOCKET_NAME)
MAX_HOPS = 8


def read_record(path: Path) -> dict[str, Any] | None:
    """A small JSON record of ours, or None when absent or unreadable."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > 64 * 1024:
            return None
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def write_record(path: Path, document: dict[str, Any]) -> None:
    """Atomic and durable: the switch must survive a power cut once it is made."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "wb") as handle:
        handle.write(json.dumps(document, indent=2, sort_keys=True).encode())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)


def forward_of(folder: Path) -> Path | None:
    record = read_record(folder / FORWARD)
    target = record.get("to") if record else None
    return Path(target) if isinstance(target, str) and Path(target).is_absolute() else None


def later(one: dict[str, Any], other: dict[str, Any]) -> bool:
    return str(one.get("switchedAt", "")) > str(other.get("switchedAt", ""))


def moved_back(home: Path, forward: Path, record: dict[str, Any]) -> bool:
    """Moved to ``forward``, then back to ``home``: the later record wins."""
    back = read_record(forward / FORWARD)
    return forward_of(forward) == home and back is not None and later(back, record)


def current_home(home: Path) -> Path:
    """The folder the records send ``home`` to, as ``resolve_home`` would, but writing
    nothing: for a process that opened ``home`` before it moved (an attached client
    about to take the home over, or to check on its owner)."""
    seen = {home}
    for _ in range(MAX_HOPS):
        record = read_record(home / FORWARD)
        forward = forward_of(home)
        if record is None or forward is None or not forward.is_dir():
            break
        if moved_back(home, forward, record):
            return home
        if forward in seen:
            return forward
        seen.add(forward)
        home = forward
    return home
