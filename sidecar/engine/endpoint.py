"""The owner's local endpoint: other processes of the same user attach here and speak
the same line-delimited JSON-RPC as on stdio.

POSIX: a Unix socket, mode 0600, made inside a folder only we can enter or in the home;
a connection from another user is refused by its peer credentials where the platform
tells them (Linux). Windows: a named pipe (``sidecar.engine.winpipe``), a separate
implementation with the same two calls."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import anyio
import anyio.abc

log = logging.getLogger(__name__)


class Connection(Protocol):
    """A byte stream between an attached client and the owner."""

    async def receive(self, max_bytes: int = 65536) -> bytes: ...

    async def send(self, item: bytes) -> None: ...

    async def aclose(self) -> None: ...


Handler = Callable[[Connection], Awaitable[None]]


class Listener(Protocol):
    async def serve(self, handler: Handler, task_group: anyio.abc.TaskGroup) -> None:
        """Accept until cancelled; each connection's ``handler`` runs in ``task_group``,
        so the connections outlive the listener (the home moved: a new one took over)."""

    async def aclose(self) -> None: ...


async def listen(endpoint: str) -> Listener:
    """Listen at ``endpoint``; a socket left by a dead owner is replaced (only the
    lock holder listens, so nobody else's socket is ever removed)."""
    if sys.platform == "win32":
        from sidecar.engine.winpipe import listen_pipe

        return await listen_pipe(endpoint)
    path = Path(endpoint)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # noqa: ASYNC240 - one unlink of a socket, at start
    # Created 0600 from the start: the umask is process-wide, so only for this bind.
    previous = os.umask(0o177)
    try:
        listener = await anyio.create_unix_listener(path)
    except OSError:
        if path.name != "engine.sock":  # a runtime folder made for nothing: gone if empty
            with contextlib.suppress(OSError):
                path.parent.rmdir()
        raise
    finally:
        os.umask(previous)
    path.chmod(0o600)  # noqa: ASYNC240 - as above
    return _UnixListener(listener, path)


async def connect(endpoint: str) -> Connection:
    """Attach to the owner; OSError if nobody listens there."""
    if sys.platform == "win32":
        from sidecar.engine.winpipe import connect_pipe

        return await connect_pipe(endpoint)
    return await anyio.connect_unix(endpoint)


class _UnixListener:
    def __init__(self, listener: anyio.abc.SocketListener, path: Path) -> None:
        self._listener = listener
        self._path = path

    async def serve(self, handler: Handler, task_group: anyio.abc.TaskGroup) -> None:
        async def checked(stream: anyio.abc.SocketStream) -> None:
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            uid = peer_uid(raw)
            if uid is not None and uid != os.getuid():
                log.warning("refused a connection from user %d", uid)
                await stream.aclose()
                return
            await handler(stream)

        await self._listener.serve(checked, task_group)

    async def aclose(self) -> None:
        """Called while we still own the home: the socket at the path is ours."""
        await self._listener.aclose()
        with contextlib.suppress(OSError):
            self._path.unlink()
        if self._path.name != "engine.sock":  # in the shared runtime folder: gone if empty
            with contextlib.suppress(OSError):
                self._path.parent.rmdir()


def peer_uid(sock: socket.socket) -> int | None:
    """The connecting process's user, where the kernel says (Linux: SO_PEERCRED)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, 12))
    except OSError:
        return None
    return int(uid)
