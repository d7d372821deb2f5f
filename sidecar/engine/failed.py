"""A sidecar that cannot start its engine still answers: every request gets the typed
error that stopped it (a home that cannot be made, a bad option, a damaged setting),
naming the path or the option and the cause, so the app and the CLI show one line
instead of a dead process. ``shutdown`` (and the end of stdin) ends it."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

import anyio
from jsonrpcserver.exceptions import JsonRpcError
from jsonrpcserver.result import Result, Success

from sidecar.errors import HomeUnavailable, ModelManagerError
from sidecar.rpc.framing import TooLong
from sidecar.rpc.methods import Handler
from sidecar.rpc.server import RpcServer
from sidecar.rpc.stdio import Writer

log = logging.getLogger(__name__)


def home_problem(home: Path) -> HomeUnavailable | None:
    """Why ``home`` cannot be a home at all: it cannot be made, or it is not a folder.
    A home we may only read is not a problem here: it still answers from what is there."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        info = os.stat(home)
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        blocker = _first_non_folder(home)
        if blocker is not None and blocker != home:
            cause = f"{blocker} is a file, not a folder"
        return HomeUnavailable(
            f"cannot use {home} as the model home: {cause}. Choose another folder "
            "with --home or MODEL_MANAGER_HOME",
            path=str(home),
            cause=cause,
        )
    if not stat.S_ISDIR(info.st_mode):
        return HomeUnavailable(
            f"cannot use {home} as the model home: it is a file, not a folder",
            path=str(home),
            cause="not a folder",
        )
    return None


def _first_non_folder(path: Path) -> Path | None:
    for parent in [*reversed(path.parents), path]:
        try:
            if not stat.S_ISDIR(os.stat(parent).st_mode):
                return parent
        except OSError:
            return None
    return None


class _EveryMethod(dict[str, Handler]):
    """jsonrpcserver looks methods up by key: every name answers with the error."""

    def __init__(self, error: ModelManagerError, stop: anyio.Event) -> None:
        super().__init__()

        async def failing(*_: Any, **__: Any) -> Result:
            raise JsonRpcError(error.code, error.message, error.to_data())

        async def shutdown(*_: Any, **__: Any) -> Result:
            stop.set()
            return Success({"stopping": True})

        self._failing = failing
        self["shutdown"] = shutdown

    def __missing__(self, key: str) -> Handler:
        return self._failing


async def serve_failed(
    error: ModelManagerError, writer: Writer, lines: AsyncIterable[bytes | TooLong]
) -> None:
    """Answer every request with ``error`` until stdin ends or ``shutdown``."""
    log.error("cannot start: %s", error.message)
    stop = anyio.Event()
    server = RpcServer(writer, _EveryMethod(error, stop))

    async def lines_until_stop() -> Any:
        async for line in lines:
            yield line
            if stop.is_set():
                return

    async with anyio.create_task_group() as group:

        async def on_stop() -> None:
            await stop.wait()
            await server.drain(2.0)
            group.cancel_scope.cancel()

        group.start_soon(on_stop)
        await server.serve(lines_until_stop())
        group.cancel_scope.cancel()
