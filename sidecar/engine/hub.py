"""The owner's clients: its own stdio and every process attached over the endpoint.
Answers go to the client that asked; notifications go to every client, so progress,
states and model changes are the same whoever started the task.

A client that does not read its notifications must not slow the others: each attached
client has a bounded queue, and one that lets it fill up is disconnected (its relay
then reattaches or takes over)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio
from jsonrpcserver.result import Result, Success

from sidecar.engine.endpoint import Connection
from sidecar.rpc.framing import LineSplitter, TooLong
from sidecar.rpc.messages import encode_message
from sidecar.rpc.methods import Handler
from sidecar.rpc.server import RpcServer
from sidecar.rpc.stdio import LineWriter

log = logging.getLogger(__name__)

CLIENT_QUEUE = 4096  # lines an attached client may fall behind before it is dropped
READ_SIZE = 1 << 16


class AttachedClient:
    """The writer of one attached connection (the RpcServer's ``writer``)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._send, self._receive = anyio.create_memory_object_stream[bytes](CLIENT_QUEUE)
        self.dropped = anyio.Event()
        self.pumped = anyio.Event()

    async def send_raw(self, line: bytes) -> None:
        self.push(line)

    async def send(self, message: Any) -> None:
        self.push(encode_message(message))

    def push(self, line: bytes) -> None:
        try:
            self._send.send_nowait(line)
        except anyio.WouldBlock:
            log.warning("an attached client fell %d lines behind: disconnecting it", CLIENT_QUEUE)
            self.dropped.set()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    async def pump(self) -> None:
        """Write the queued lines out, in order, until the connection breaks."""
        try:
            async for line in self._receive:
                await self.connection.send(line)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.dropped.set()
        self.pumped.set()

    def close(self) -> None:
        self._send.close()


class Hub:
    def __init__(self, stdout: LineWriter, max_line_bytes: int) -> None:
        self.stdout = stdout
        self.max_line_bytes = max_line_bytes
        self.clients: set[AttachedClient] = set()
        self._servers: dict[AttachedClient, RpcServer] = {}

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        line = encode_message({"jsonrpc": "2.0", "method": method, "params": params})
        for client in list(self.clients):
            client.push(line)
        await self.stdout.send_raw(line)

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound
        """The engine stops: answers in flight still reach their attached clients (a
        relay would otherwise send the request again to whoever owns the home next)."""
        with anyio.move_on_after(timeout):
            for client, server in list(self._servers.items()):
                await server.drain(timeout)
                client.close()  # its pump writes what is queued, then ends
                await client.pumped.wait()

    async def serve_connection(self, connection: Connection, methods: dict[str, Handler]) -> None:
        """One attached client, until it leaves, says ``shutdown`` or falls behind.
        ``shutdown`` over the endpoint detaches that client only: the engine serves on."""
        client = AttachedClient(connection)
        detached = anyio.Event()

        async def shutdown(**_: Any) -> Result:
            detached.set()
            return Success({"stopping": True})

        server = RpcServer(client, {**methods, "shutdown": shutdown})
        self.clients.add(client)
        self._servers[client] = server
        try:
            await self._serve(client, server, connection, detached)
        except Exception:  # one client's trouble must never stop the engine
            log.exception("an attached client's connection failed")
        finally:
            self.clients.discard(client)
            self._servers.pop(client, None)
            client.close()
            with contextlib.suppress(Exception):
                await connection.aclose()

    async def _serve(
        self,
        client: AttachedClient,
        server: RpcServer,
        connection: Connection,
        detached: anyio.Event,
    ) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(client.pump)

            async def detach() -> None:
                await detached.wait()
                await server.drain(2.0)
                client.close()  # the pump writes what is queued (the answer), then ends
                with anyio.move_on_after(2.0):
                    await client.pumped.wait()
                group.cancel_scope.cancel()

            async def drop() -> None:
                await client.dropped.wait()
                group.cancel_scope.cancel()

            group.start_soon(detach)
            group.start_soon(drop)
            await server.serve(self._lines(connection))
            group.cancel_scope.cancel()

    async def _lines(self, connection: Connection) -> Any:
        splitter = LineSplitter(self.max_line_bytes)
        while True:
            try:
                data = await connection.receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = b""
            except OSError:
                data = b""
            lines: list[bytes | TooLong] = splitter.feed(data) if data else splitter.finish()
            for line in lines:
                yield line
            if not data:
                return
