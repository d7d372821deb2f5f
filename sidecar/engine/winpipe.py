"""The owner's endpoint on Windows: a named pipe (untested here: CI runs on Linux).

``\\\\.\\pipe\\model-manager-<digest of the home>#<key>``: the pipe's name, then a random
key the owner makes at start. The key is written only to the home's ``engine.lock``,
which the home's ACL (a folder under the user's profile) lets this user alone read; a
connection that does not prove it knows the key (multiprocessing's HMAC challenge, done
before any byte of ours is read or written) is dropped. So only the same user attaches,
whatever the pipe's default DACL lets others open.

Pipes cannot be polled by asyncio's selector loop: each blocking call runs in a thread.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

import anyio
import anyio.abc

log = logging.getLogger(__name__)

KEY_MARK = "#"


def with_new_key(pipe: str) -> str:
    return f"{pipe}{KEY_MARK}{secrets.token_hex(32)}"


def _split(endpoint: str) -> tuple[str, bytes]:
    pipe, _, key = endpoint.partition(KEY_MARK)
    return pipe, bytes.fromhex(key) if key else b""


class PipeConnection:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            data: bytes = await anyio.to_thread.run_sync(
                self._connection.recv_bytes, abandon_on_cancel=True
            )
        except (EOFError, OSError) as exc:
            raise anyio.EndOfStream from exc
        return data

    async def send(self, item: bytes) -> None:
        try:
            await anyio.to_thread.run_sync(self._connection.send_bytes, item)
        except OSError as exc:
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.close()


class PipeListener:
    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._closed = False

    async def serve(self, handler: Any, task_group: anyio.abc.TaskGroup) -> None:
        while not self._closed:
            try:
                connection = await anyio.to_thread.run_sync(
                    self._listener.accept, abandon_on_cancel=True
                )
            except (AuthenticationError, EOFError, OSError) as exc:
                if not self._closed:
                    log.warning("refused a connection to the pipe: %s", exc)
                continue
            if self._closed:  # accepted by a thread abandoned when the home moved
                connection.close()
                return
            task_group.start_soon(handler, PipeConnection(connection))

    async def aclose(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()


async def listen_pipe(endpoint: str) -> PipeListener:
    pipe, key = _split(endpoint)
    listener = await anyio.to_thread.run_sync(lambda: Listener(pipe, family="AF_PIPE", authkey=key))
    return PipeListener(listener)


async def connect_pipe(endpoint: str) -> PipeConnection:
    pipe, key = _split(endpoint)
    try:
        connection = await anyio.to_thread.run_sync(
            lambda: Client(pipe, family="AF_PIPE", authkey=key)
        )
    except (AuthenticationError, EOFError) as exc:
        raise OSError(f"the owner's pipe refused us: {exc}") from exc
    return PipeConnection(connection)
