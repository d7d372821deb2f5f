"""An attached sidecar: another process owns the home, so this one carries its stdio to
the owner's endpoint and back, line by line, unchanged. Its client (the CLI, a second
app instance) sees the owner's tasks, answers and notifications.

Two things are answered here and not sent on: ``shutdown`` (it ends this process, not
the engine other clients use) and a line over the size limit. Requests sent but not
yet answered are remembered: when the owner goes away, the process that takes over
answers them itself."""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream

from sidecar.engine.endpoint import Connection
from sidecar.rpc.framing import LineSplitter, TooLong
from sidecar.rpc.messages import too_long_error
from sidecar.rpc.stdio import LineWriter

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16


class Outcome(Enum):
    CLIENT_DONE = "client done"  # stdin ended or the client said shutdown
    OWNER_GONE = "owner gone"


@dataclass
class _Sent:
    line: bytes
    ids: set[str] = field(default_factory=set)  # JSON of the ids still unanswered


def _request_ids(message: Any) -> tuple[set[str], bool]:
    """The ids a line's requests will be answered under, and whether it is `shutdown`."""
    items = message if isinstance(message, list) else [message]
    ids, shutdown = set(), False
    for item in items:
        if isinstance(item, dict) and "id" in item and item.get("id") is not None:
            ids.add(json.dumps(item["id"]))
            shutdown |= item.get("method") == "shutdown" and not isinstance(message, list)
    return ids, shutdown


def _answered_ids(message: Any) -> set[str]:
    items = message if isinstance(message, list) else [message]
    return {
        json.dumps(item["id"])
        for item in items
        if isinstance(item, dict) and "method" not in item and item.get("id") is not None
    }


class Relay:
    def __init__(self, writer: LineWriter, max_line_bytes: int) -> None:
        self.writer = writer
        self.max_line_bytes = max_line_bytes
        self.unanswered: list[_Sent] = []

    def take_unanswered(self) -> list[bytes]:
        """Lines sent to an owner that went away before answering them, in order."""
        lines = [sent.line for sent in self.unanswered if sent.ids]
        self.unanswered = []
        return lines

    async def run(
        self, connection: Connection, lines: ObjectReceiveStream[bytes | TooLong]
    ) -> Outcome:
        outcome = Outcome.OWNER_GONE
        async with anyio.create_task_group() as group:

            async def upstream() -> None:
                nonlocal outcome
                async for line in lines:
                    if isinstance(line, TooLong):
                        await self.writer.send(too_long_error(line.limit))
                        continue
                    if await self._send_up(connection, line):
                        outcome = Outcome.CLIENT_DONE
                        group.cancel_scope.cancel()
                        return
                outcome = Outcome.CLIENT_DONE  # stdin ended: this process leaves
                group.cancel_scope.cancel()

            async def downstream() -> None:
                await self._copy_down(connection)
                group.cancel_scope.cancel()  # the owner went away: outcome stays OWNER_GONE

            group.start_soon(upstream)
            group.start_soon(downstream)
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await connection.aclose()
        return outcome

    async def _send_up(self, connection: Connection, line: bytes) -> bool:
        """Send ``line`` to the owner; True when it was our own ``shutdown``."""
        try:
            message = json.loads(line)
        except ValueError:
            message = None  # the owner answers the parse error
        ids, shutdown = _request_ids(message)
        if shutdown:
            assert isinstance(message, dict)
            answer = {"jsonrpc": "2.0", "result": {"stopping": True}, "id": message["id"]}
            await self.writer.send(answer)
            return True
        if ids:
            self.unanswered.append(_Sent(line, ids))
        try:
            await connection.send(line + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            if not ids:  # a notification is lost with the owner; a request is re-sent
                log.info("the owner went away before a notification reached it")
        return False

    async def _copy_down(self, connection: Connection) -> None:
        splitter = LineSplitter(1 << 30)  # the owner's lines are trusted and whole
        while True:
            try:
                data = await connection.receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            except OSError:
                return
            for line in splitter.feed(data):
                assert not isinstance(line, TooLong)
                await self.writer.send_raw(line + b"\n")
                if self.unanswered and not line.startswith(b'{"jsonrpc":"2.0","method"'):
                    self._mark_answered(line)

    def _mark_answered(self, line: bytes) -> None:
        try:
            answered = _answered_ids(json.loads(line))
        except ValueError:
            return
        for sent in self.unanswered:
            sent.ids -= answered
        self.unanswered = [sent for sent in self.unanswered if sent.ids]
