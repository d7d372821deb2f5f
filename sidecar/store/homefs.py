"""Every file the sidecar opens under its home goes through here, so a link planted in
the home (``temp/x.part.lock -> ~/.bashrc``, ``metadata/<id> -> /etc``) is never
followed, and a state file that is a FIFO, a device or a huge file is never read.

The home folder itself may be a link (the user chose it); nothing below it may be.
On POSIX every path is walked from the home one component at a time with
``O_NOFOLLOW`` and ``dir_fd``, so there is no window between a check and the open.
On Windows (no ``dir_fd``) each component is checked with ``lstat`` first and links
and other reparse points are refused.

API (all blocking: from async code call through ``anyio.to_thread``)::

    fs = HomeFS(root)              # or layout.fs, or HomeFS.of(path) (see below)
    fs.check(path) -> Path         # UnsafeHomePath if outside the home or through a link
    fs.open(path, flags, mode=0o666, create_parents=False) -> int   # os.open, no links
    fs.open_file(path, "rb" | "wb" | "ab" | "a+b" | "r+b" | "w+b", create_parents=False)
        -> BinaryIO                # regular files only (a FIFO or device is refused)
    fs.makedirs(path)              # mkdir -p, never through a link
    fs.read_bytes(path, limit=MAX_STATE_BYTES) -> bytes   # DamagedFile (a ValueError)
    fs.read_json(path, limit=MAX_STATE_BYTES) -> Any      # ... also for nesting > MAX_JSON_DEPTH
    fs.atomic_write(path, data)    # temp file + fsync + rename, in the same folder
    fs.set_aside(path) -> Path | None   # rename to "<name>.damaged-<UTC time>"
    fs.drop_link(path) -> bool     # unlink a planted link (never its target)

``HomeFS.of(path)`` is the HomeFS of the innermost home a ``HomeLayout`` was made for
that contains ``path`` (every layout registers its root); for a path under no known
home it is the path's own folder, so at least the file itself is never a link.

``UnsafeHomePath`` is a ``HomeUnavailable`` (HOME_UNAVAILABLE) naming the path;
``home_error(exc)`` turns an OSError from any file operation under a home into
PERMISSION_DENIED / HOME_UNAVAILABLE (None for other errors, e.g. a full disk).
"""

# Paths here are strings on purpose: Path.resolve() would follow the very links we refuse.
# ruff: noqa: PTH100, PTH102, PTH117, PTH118, PTH119, PTH120, PTH206

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from sidecar.errors import HomeUnavailable, ModelManagerError, PermissionDenied

MAX_STATE_BYTES = 64 * 1024 * 1024  # registry.json, tasks.json, cache/*.json, records
MAX_JSON_DEPTH = 64  # our own documents nest 6 deep; a manifest's `extra` a little more

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_USE_DIR_FD = bool(_NOFOLLOW) and os.open in os.supports_dir_fd and os.name != "nt"
_REPARSE_POINT = 0x400  # FILE_ATTRIBUTE_REPARSE_POINT
_MODES = {
    "rb": os.O_RDONLY,
    "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "a+b": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "r+b": os.O_RDWR,
    "w+b": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
}
_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
_UNUSABLE = {errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENOENT, errno.EEXIST}

_homes: set[str] = set()
_homes_lock = threading.Lock()


class UnsafeHomePath(HomeUnavailable):
    """A path that leaves the home, goes through a link, or is not a regular file."""

    def __init__(self, path: str | os.PathLike[str], why: str) -> None:
        super().__init__(f"refusing {os.fspath(path)}: {why}", path=os.fspath(path))


class DamagedFile(ValueError):
    """A state file that is not a regular file, is too large or nests too deep."""


def register_home(root: Path) -> None:
    with _homes_lock:
        _homes.add(_absolute(root))


def home_error(exc: BaseException) -> ModelManagerError | None:
    """PERMISSION_DENIED or HOME_UNAVAILABLE for an OSError under a home, naming the path."""
    if isinstance(exc, ModelManagerError) or not isinstance(exc, OSError):
        return exc if isinstance(exc, HomeUnavailable | PermissionDenied) else None
    path = exc.filename or ""
    where = _shown(path)
    if exc.errno in _PERMISSION:
        return PermissionDenied(
            f"cannot write to {where} ({exc.strerror}): make the model home writable by "
            "this user, or choose another with --home / MODEL_MANAGER_HOME",
            path=where,
        )
    if exc.errno in _UNUSABLE and path:
        return HomeUnavailable(f"the model home is damaged at {where}: {exc.strerror}", path=where)
    return None


@contextmanager
def map_home_errors() -> Iterator[None]:
    """Raise ``home_error(exc)`` in place of an OSError it knows."""
    try:
        yield
    except OSError as exc:
        if (mapped := home_error(exc)) is not None:
            raise mapped from exc
        raise


def _shown(path: str | os.PathLike[str]) -> str:
    """The folder to tell the user about: the home's top-level folder the path is in."""
    text = _absolute(os.fspath(path)) if path else ""
    for root in sorted(_homes, key=len, reverse=True):
        if text == root:
            return root
        if text.startswith(root + os.sep):
            top = text[len(root) + 1 :].split(os.sep, 1)[0]
            return os.path.join(root, top)
    return text


class HomeFS:
    def __init__(self, root: Path) -> None:
        self.root = Path(_absolute(root))

    @classmethod
    def of(cls, path: Path) -> HomeFS:
        text = _absolute(path)
        with _homes_lock:
            roots = [r for r in _homes if text.startswith(r + os.sep)]
        if roots:
            return cls(Path(max(roots, key=len)))
        return cls(Path(text).parent)

    # --- paths ---------------------------------------------------------------------

    def _parts(self, path: Path) -> list[str]:
        absolute = _absolute(path)
        root = str(self.root)
        if not absolute.startswith(root + os.sep):
            raise UnsafeHomePath(path, f"not inside the model home {root}")
        return absolute[len(root) + 1 :].split(os.sep)

    def check(self, path: Path) -> Path:
        """``path`` if it is inside the home and no component of it is a link."""
        parts = self._parts(path)
        current = self.root
        for name in parts:
            current = current / name
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                return path
            if is_link(info):
                raise UnsafeHomePath(current, "it is a link")
        return path

    @contextmanager
    def _parent(self, path: Path, create: bool) -> Iterator[tuple[int | None, str]]:
        """(descriptor of the folder holding ``path``, its last component)."""
        parts = self._parts(path)
        if not _USE_DIR_FD:
            self._check_parents(parts, create)
            yield None, os.path.join(self.root, *parts)
            return
        fd = os.open(self.root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
        try:
            walked = self.root
            for name in parts[:-1]:
                walked = walked / name
                inner = self._open_dir(fd, name, walked, create)
                os.close(fd)
                fd = inner
            try:
                yield fd, parts[-1]
            except OSError as exc:  # name the file in full, not relative to ``fd``
                for attribute in ("filename", "filename2"):
                    name = getattr(exc, attribute)
                    if isinstance(name, str) and not os.path.isabs(name):
                        setattr(exc, attribute, os.path.join(walked, name))
                raise
        finally:
            os.close(fd)

    def _open_dir(self, fd: int, name: str, walked: Path, create: bool) -> int:
        flags = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
        try:
            return os.open(name, flags, dir_fd=fd)
        except FileNotFoundError as exc:
            if not create:
                exc.filename = str(walked)
                raise
            try:
                with suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
                return os.open(name, flags, dir_fd=fd)
            except OSError as inner:
                inner.filename = str(walked)
                raise
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if is_link(info):
                    raise UnsafeHomePath(walked, "it is a link") from None
            exc.filename = str(walked)
            raise

    def _check_parents(self, parts: list[str], create: bool) -> None:
        current = self.root
        for name in parts[:-1]:
            current = current / name
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                if not create:
                    raise
                with suppress(FileExistsError):
                    os.mkdir(current)
                info = os.lstat(current)
            if is_link(info):
                raise UnsafeHomePath(current, "it is a link")
        leaf = current / parts[-1]
        with suppress(FileNotFoundError):
            if is_link(os.lstat(leaf)):
                raise UnsafeHomePath(leaf, "it is a link")

    # --- opening -------------------------------------------------------------------

    def open(self, path: Path, flags: int, mode: int = 0o666, create_parents: bool = False) -> int:
        with self._parent(path, create_parents) as (fd, name):
            try:
                return os.open(name, flags | _NOFOLLOW | _CLOEXEC | _BINARY, mode, dir_fd=fd)
            except OSError as exc:
                linked = exc.errno in (errno.ELOOP, errno.EMLINK) and fd is not None
                if linked and is_link(os.stat(name, dir_fd=fd, follow_symlinks=False)):
                    raise UnsafeHomePath(path, "it is a link") from None
                exc.filename = str(path)
                raise

    def open_file(self, path: Path, mode: str = "rb", create_parents: bool = False) -> IO[bytes]:
        """A regular file (never a FIFO: opened without blocking, then checked)."""
        fd = self.open(path, _MODES[mode] | _NONBLOCK, 0o666, create_parents)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeHomePath(path, "it is not a regular file")
            if _NONBLOCK:
                os.set_blocking(fd, True)
            return cast(IO[bytes], os.fdopen(fd, mode))
        except BaseException:
            os.close(fd)
            raise

    def makedirs(self, path: Path) -> None:
        if _absolute(path) == str(self.root):
            self.root.mkdir(parents=True, exist_ok=True)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with self._parent(path / "x", create=True):
            pass

    # --- state files ---------------------------------------------------------------

    def read_bytes(self, path: Path, limit: int = MAX_STATE_BYTES) -> bytes:
        """FileNotFoundError if absent; DamagedFile if not a regular file or too large."""
        try:
            handle = self.open_file(path, "rb")
        except UnsafeHomePath as exc:
            raise DamagedFile(exc.message) from exc
        except IsADirectoryError as exc:
            raise DamagedFile(f"{path} is a folder") from exc
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise DamagedFile(f"{path} holds {size} bytes, more than {limit}")
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise DamagedFile(f"{path} grew past {limit} bytes")
        return data

    def read_json(self, path: Path, limit: int = MAX_STATE_BYTES) -> Any:
        return loads_bounded(self.read_bytes(path, limit), str(path))

    def atomic_write(self, path: Path, data: bytes, mode: int = 0o600) -> None:
        """Readers see the old content or the new one, never a torn file, even after a
        crash. A folder or other non-file in the way is set aside first."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._parent(path, create=True) as (fd, name):
            # ".<name>.<pid>-<random>.tmp": fsutil.sweep_temp_files knows the writer.
            base = os.path.basename(name)
            temp = _sibling(fd, name, f".{base}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
            tfd = os.open(temp, flags, mode, dir_fd=fd)
            try:
                with os.fdopen(tfd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.replace(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
                except (IsADirectoryError, PermissionError) as exc:
                    if not self._is_non_file(path) or self.set_aside(path) is None:
                        exc.filename = str(path)
                        raise
                    os.replace(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                with suppress(OSError):
                    os.unlink(temp, dir_fd=fd)
                raise
            if fd is not None:
                os.fsync(fd)

    def _is_non_file(self, path: Path) -> bool:
        try:
            return not stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            return False

    def set_aside(self, path: Path) -> Path | None:
        """Rename a damaged file or folder (or a planted link) out of the way, keeping it
        for a human to look at; None if it could not be moved."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        aside = path.with_name(f"{path.name}.damaged-{stamp}")
        try:
            with self._parent(path, create=False) as (fd, name):
                os.rename(name, _sibling(fd, name, aside.name), src_dir_fd=fd, dst_dir_fd=fd)
        except (OSError, UnsafeHomePath):
            return None
        return aside

    def drop_link(self, path: Path) -> bool:
        """Unlink ``path`` if it is a link (a planted lock file): never touches the target."""
        try:
            with self._parent(path, create=False) as (fd, name):
                if not is_link(os.stat(name, dir_fd=fd, follow_symlinks=False)):
                    return False
                os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            return False
        return True


def loads_bounded(data: bytes, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads that refuses nesting deeper than ``max_depth`` (DamagedFile)."""
    try:
        document = json.loads(data)
    except RecursionError as exc:
        raise DamagedFile(f"{what} nests too deep") from exc
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise DamagedFile(f"{what} nests deeper than {max_depth}")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return document


def _absolute(path: str | os.PathLike[str]) -> str:
    """The path made absolute without following links; pure string work when it
    already is (os.path.abspath asks for the working folder: I/O on the event loop)."""
    text = os.fspath(path)
    return os.path.normpath(text) if os.path.isabs(text) else os.path.abspath(text)


def _sibling(fd: int | None, name: str, other: str) -> str:
    """``other`` beside ``name``: relative to ``fd``, or a full path when there is none."""
    return other if fd is not None else os.path.join(os.path.dirname(name), other)


def is_link(info: os.stat_result) -> bool:
    attributes = getattr(info, "st_file_attributes", 0)
    return stat.S_ISLNK(info.st_mode) or bool(attributes & _REPARSE_POINT)
