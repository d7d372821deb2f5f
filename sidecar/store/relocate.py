"""Moving the whole home to another folder or drive, safe against a kill at any point.

The switch is one atomic write: ``<old home>/moved-to.json``, the forwarding record.
Before it, the old home is the home, untouched and valid; after it, the new one is,
and whatever is left to do is rolled forward by whoever opens either folder next
(``resolve_home`` at start-up, or ``moveStore`` run again):

- same volume (``rename``): the target gets a marker, the record is written, then each
  entry of the old home is renamed into the target (instant, no copy);
- another volume (``copy``): every file is copied and verified
  (``sidecar.store.copying``), then the record is written and the old files deleted.

A running owner (``claim``) takes the target's lock and endpoint just before the switch,
so a client sent there by the record finds it; the old folder's lock and socket are
never moved, only deleted once the switch is made.

The target holds ``.moving-in.json`` (naming the old home) until the move is done, so a
rerun may continue into it although it is not empty. The old folder keeps only
``moved-to.json``: a sidecar started with the old ``--home`` follows it (up to
``MAX_HOPS`` records), so an app that has not stored the new home yet still finds it.

``MODEL_MANAGER_TEST_MOVE_KILL=<point>`` (tests only) kills the process with SIGKILL at
a named point: ``before-copy``, ``mid-copy`` (after the first file), ``before-switch``,
``claimed`` (the owner holds the target's lock), ``after-switch``, ``mid-rename`` (after
the first entry renamed).

Blocking: run in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sidecar.errors import (
    HomeUnavailable,
    InsufficientDiskSpace,
    InvalidState,
    ModelManagerError,
    PermissionDenied,
)
from sidecar.store.copying import Progress, copy_verified
from sidecar.store.forwarding import (
    FORWARD,
    INCOMING,
    MAX_HOPS,
    OWNER_FILES,
    forward_of,
    moved_back,
    read_record,
    write_record,
)
from sidecar.store.fsutil import fsync_dir
from sidecar.store.locks import lock_is_stale, read_lock_info

log = logging.getLogger(__name__)

TEST_KILL_ENV = "MODEL_MANAGER_TEST_MOVE_KILL"
Method = Literal["rename", "copy"]
Claim = Callable[[Path], None]  # the running owner takes the target's lock and endpoint


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


@dataclass
class MoveOutcome:
    home: Path
    method: Method
    bytes_copied: int = 0
    files: int = 0
    paused_tasks: list[str] = field(default_factory=list)


def _test_point(name: str) -> None:
    if os.environ.get(TEST_KILL_ENV) == name:
        log.warning("test hook: killed at %s", name)
        os.kill(os.getpid(), signal.SIGKILL)


# --- checks ----------------------------------------------------------------------------


def check_target(home: Path, to: str) -> Path:
    """The resolved target, or a typed refusal naming the path. Nothing is written."""
    if not Path(to).expanduser().is_absolute():
        raise InvalidState(f"give the new home as an absolute path, not {to!r}", path=to)
    target = Path(to).expanduser().resolve()
    home = home.resolve()
    if target == home or home in target.parents:
        raise InvalidState(
            f"cannot move the model home into itself: {target} is inside {home}",
            reason="target_inside_home",
            path=str(target),
        )
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise InvalidState(
                f"{target} is not a folder", reason="target_not_folder", path=str(target)
            )
        if not _empty_or_ours(target, home):
            raise InvalidState(
                f"{target} is not empty: move the model home into a new or empty folder",
                reason="target_not_empty",
                path=str(target),
            )
    return target


def _empty_or_ours(target: Path, home: Path) -> bool:
    try:
        names = [p.name for p in target.iterdir()]
    except OSError as exc:
        raise _denied(target, exc) from exc
    if not names:
        return True
    record = read_record(target / INCOMING)
    if record is not None and record.get("from") == str(home):
        return True  # an earlier attempt's copy
    # Moving back: the folder this home came from keeps only its forwarding record.
    return set(names) <= {FORWARD, INCOMING, *OWNER_FILES} and forward_of(target) == home


def check_no_other_writer(home: Path) -> None:
    """Another live process installing into this home would write into the old folder
    while it is copied: refuse rather than lose its work."""
    locks = home / "in-progress-downloads"
    for path in sorted(locks.glob("*.lock")) if locks.is_dir() else []:
        info = read_lock_info(path)
        if info is not None and info.pid != os.getpid() and not lock_is_stale(info):
            raise InvalidState(
                f"another process (pid {info.pid}) is installing {info.model_id}@"
                f"{info.version} into {home}: let it finish or stop it, then move the home",
                reason="move_in_progress",
                path=str(home),
            )


def _denied(path: Path, exc: OSError) -> ModelManagerError:
    if isinstance(exc, PermissionError):
        return PermissionDenied(f"cannot write {path}: permission denied", path=str(path))
    return InvalidState(f"cannot use {path}: {exc.strerror or exc}", path=str(path))


# --- the move --------------------------------------------------------------------------


def relocate(
    home: Path,
    target: Path,
    paused_tasks: list[str],
    progress: Progress = _no_progress,
    claim: Claim | None = None,
) -> MoveOutcome:
    """Move ``home`` to ``target`` (checked by ``check_target``) and finish the move.
    ``claim(target)`` runs just before the switch; what it raises stops the move."""
    home = home.resolve()
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
        marker = read_record(target / INCOMING) or {}
        paused = sorted({*marker.get("pausedTasks", []), *paused_tasks})
        write_record(target / INCOMING, {"from": str(home), "pausedTasks": paused})
        method: Method = "rename" if _can_rename(home, target) else "copy"
    except OSError as exc:
        raise _denied(target, exc) from exc
    outcome = MoveOutcome(home=target, method=method, paused_tasks=paused)
    _test_point("before-copy")
    try:
        if method == "copy":
            copied = copy_verified(home, target, progress, lambda: _test_point("mid-copy"))
            outcome.bytes_copied, outcome.files = copied
        else:
            outcome.files = sum(len(files) for _, _, files in os.walk(home))
    except OSError as exc:
        raise _unfinished(home, target, exc) from exc
    except InsufficientDiskSpace:  # refused before a byte was copied
        if not marker:
            (target / INCOMING).unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    target.rmdir()
        raise
    _test_point("before-switch")
    if claim is not None:
        claim(target)
        _test_point("claimed")
    record = {
        "to": str(target), "from": str(home), "method": method,
        "switchedAt": datetime.now(UTC).isoformat(timespec="microseconds"),
    }  # fmt: skip
    write_record(home / FORWARD, record)  # the switch
    log.info("the model home moved from %s to %s (%s)", home, target, method)
    _test_point("after-switch")
    try:
        finish_move(home, record)
    except OSError as exc:
        if method == "rename":  # the new home is not whole until every entry is in it
            raise HomeUnavailable(
                f"the model home moved to {target} but {exc.filename} could not follow "
                f"({exc.strerror}); restart the sidecar to finish the move",
                path=str(exc.filename or home),
            ) from exc
        log.warning("cannot delete the old copy under %s yet: %s", home, exc)
    return outcome


def _unfinished(home: Path, target: Path, exc: OSError) -> ModelManagerError:
    """A copy that failed before the switch: the home is still ``home``, and what was
    copied stays in ``target`` for a rerun to continue from."""
    where = exc.filename or target
    then = f"the model home is still {home}; run moveStore again to continue"
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return InsufficientDiskSpace(
            f"the drive of {target} filled up: {then}", reason="no_space", path=str(target)
        )
    if isinstance(exc, PermissionError):
        return PermissionDenied(f"cannot write {where}: permission denied; {then}", path=str(where))
    return HomeUnavailable(f"cannot copy {where}: {exc.strerror or exc}; {then}", path=str(where))


def _can_rename(home: Path, target: Path) -> bool:
    """Whether entries rename from ``home`` into ``target``: same device, and no bind
    mount between them (which also answers EXDEV)."""
    if os.stat(home).st_dev != os.stat(target).st_dev:
        return False
    probe = home / ".move-probe"
    probe.write_bytes(b"")
    try:
        probe.rename(target / probe.name)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    finally:
        probe.unlink(missing_ok=True)
    (target / probe.name).unlink(missing_ok=True)
    return True


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in (FORWARD, INCOMING))


def _drop_owner_files(home: Path) -> None:
    """The old folder's lock and socket: not the new home's (its owner claimed its own).
    Deleting a lock still held is safe here: whoever locks a moved home's lock lets go
    once it reads the forwarding record (``sidecar.app``)."""
    for name in OWNER_FILES:
        (home / name).unlink(missing_ok=True)


def finish_move(home: Path, record: dict[str, Any]) -> None:
    """Roll a switched move forward (idempotent): the entries still in the old home are
    renamed into the new one (``rename``) or deleted, being copied (``copy``)."""
    target = Path(str(record.get("to")))
    if not target.is_dir():
        log.error("the model home moved to %s, which is gone", target)
        return
    _drop_owner_files(home)
    for name in _entries(home):
        entry = home / name
        if record.get("method") == "rename":
            if (target / name).exists():
                log.warning("not moving %s: %s exists", entry, target / name)
                continue
            entry.rename(target / name)
            _test_point("mid-rename")
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if forward_of(target) == home:  # moved back: the record that led here is void
        (target / FORWARD).unlink(missing_ok=True)
    fsync_dir(target)
    marker = read_record(target / INCOMING)
    if marker is not None and marker.get("from") == str(home):
        (target / INCOMING).unlink(missing_ok=True)


def resolve_home(home: Path) -> tuple[Path, list[str]]:
    """The home a sidecar started with ``home`` must use, after finishing any move that
    was switched but not completed; and the messages to log once logging is set up."""
    notes: list[str] = []
    seen = {home}
    for _ in range(MAX_HOPS):
        record = read_record(home / FORWARD)
        forward = forward_of(home)
        if record is None or forward is None:
            break
        if not forward.is_dir():
            notes.append(f"the model home {home} moved to {forward}, which is gone: using {home}")
            break
        if moved_back(home, forward, record):  # there, then back here: this is the home
            finish_move(forward, read_record(forward / FORWARD) or {})
            break
        try:
            finish_move(home, record)
        except OSError as exc:
            notes.append(f"cannot finish moving {home} to {forward}: {exc}")
        notes.append(f"the model home {home} moved to {forward}: using it")
        if forward in seen:
            notes.append(f"forwarding records loop at {forward}: using it")
            return forward, notes
        seen.add(forward)
        home = forward
    marker = read_record(home / INCOMING)
    if marker is not None:
        source = Path(str(marker.get("from")))
        if forward_of(source) == home:
            finish_move(source, read_record(source / FORWARD) or {})
        else:
            notes.append(
                f"{home} holds an unfinished copy of the model home {source}: the home is "
                f"still {source}; run moveStore there again to finish"
            )
    return home, notes
