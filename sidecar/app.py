"""Wires the services together and runs until told to stop.

One engine per home: the first sidecar on a home owns it (``sidecar.engine.ownership``)
and runs the engine; a later one attaches to the owner and relays its stdio there
(``sidecar.engine.relay``). When the owner goes away, an attached sidecar takes over:
it owns the home from then on, resumes the unfinished tasks and answers the requests
the old owner left unanswered. Either way stdio is the interface its client sees."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import signal
import sys
from collections.abc import AsyncIterator

import anyio
from anyio.abc import ObjectReceiveStream

from sidecar import __version__
from sidecar.config import Settings
from sidecar.core.leases import STDIO
from sidecar.core.manager import Manager
from sidecar.engine.endpoint import Connection, connect
from sidecar.engine.failed import home_problem, serve_failed
from sidecar.engine.hub import Hub
from sidecar.engine.owned import Ownership
from sidecar.engine.ownership import EngineLock, OwnerInfo, endpoint_for, wait_for_writer_to_end
from sidecar.engine.relay import Outcome, Relay
from sidecar.errors import ModelManagerError
from sidecar.logs import setup_logging
from sidecar.rpc.framing import TooLong
from sidecar.rpc.methods import build_methods
from sidecar.rpc.server import RpcServer
from sidecar.rpc.stdio import LineWriter, StdinReader, claim_stdout
from sidecar.store.forwarding import current_home
from sidecar.store.layout import HomeLayout
from sidecar.store.locks import pid_alive
from sidecar.store.relocate import resolve_home
from sidecar.transfer.client import TransferClient
from sidecar.transfer.http import JsonClient
from sidecar.transfer.network import Network
from sidecar.watchdog import watch_parent

log = logging.getLogger(__name__)

SHUTDOWN_ANSWER_TIMEOUT = 2.0  # let the answer to `shutdown` (and other quick ones) go out
STOP_MARGIN = 10.0  # beyond it, whatever still runs is cancelled
OWNER_POLL = 0.05  # between attempts to own or attach while the owner changes hands
HEARTBEAT_MAX = 1.0  # the lock file names the worker within a second of its (re)start
HUNG_CHECK = 0.5  # how often an attached sidecar with requests in flight checks the owner

Lines = ObjectReceiveStream[bytes | TooLong]


async def _on_signals(stop: anyio.Event) -> None:
    if sys.platform == "win32":
        return
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for received in signals:
            log.info("signal %s: shutting down", received)
            stop.set()
            return


async def run(settings: Settings) -> int:
    """Serve stdin until it ends, ``shutdown`` or a signal; the process's exit code."""
    problem = home_problem(settings.home)
    notes: list[str] = []
    if problem is None:  # a home moved by moveStore forwards to its new place
        home, notes = await anyio.to_thread.run_sync(resolve_home, settings.home)
        settings = dataclasses.replace(settings, home=home)
    layout = HomeLayout(settings.home)
    setup_logging(None if problem else layout, settings.log_level)
    for note in notes:
        log.warning("%s", note)
    log.info(
        "sidecar %s starting: home=%s repositories=%s",
        __version__, settings.home, list(settings.repositories),
    )  # fmt: skip
    writer = LineWriter(claim_stdout())
    reader = StdinReader(sys.stdin.fileno(), settings.max_line_bytes)
    if problem is not None:
        await serve_lines(reader, lambda lines: serve_failed(problem, writer, lines))
        return 1
    stop = anyio.Event()
    finished = anyio.Event()

    async def phases(lines: Lines) -> None:
        await _own_or_attach(settings, writer, lines, stop)
        finished.set()
        stop.set()

    async with anyio.create_task_group() as group:
        group.start_soon(serve_lines, reader, phases)
        group.start_soon(watch_parent, settings.parent_pid, stop.set)
        group.start_soon(_on_signals, stop)
        await stop.wait()
        # The engine answers what is in flight (`shutdown` among them) and stops its
        # tasks before it returns; a relay returns at once.
        with anyio.move_on_after(SHUTDOWN_ANSWER_TIMEOUT + STOP_MARGIN):
            await finished.wait()
        group.cancel_scope.cancel()
    log.info("sidecar stopped")
    return 0


async def serve_lines(reader: StdinReader, consumer: object) -> None:
    """stdin's lines through one stream that every phase reads in turn (receiving from
    it is safe to cancel: no line is lost between the relay and a takeover)."""
    send, receive = anyio.create_memory_object_stream[bytes | TooLong](0)
    async with anyio.create_task_group() as group:
        await group.start(reader.run)

        async def pump() -> None:
            async with send:
                async for line in reader.lines():
                    await send.send(line)

        group.start_soon(pump)
        await consumer(receive)  # type: ignore[operator]
        group.cancel_scope.cancel()


async def _own_or_attach(
    settings: Settings, writer: LineWriter, lines: Lines, stop: anyio.Event
) -> None:
    lock = EngineLock(settings.home)
    relay = Relay(writer, settings.max_line_bytes)
    previous: OwnerInfo | None = None  # the last owner seen: its writer must end first
    announced_wait = False
    while not stop.is_set():
        moved = await anyio.to_thread.run_sync(current_home, settings.home)
        if moved != settings.home:  # moveStore moved it since we opened it: follow
            log.info("the model home %s moved to %s: following it", settings.home, moved)
            await anyio.to_thread.run_sync(lock.release)
            settings = dataclasses.replace(settings, home=moved)
            lock = EngineLock(moved)
            continue
        try:
            owned = await anyio.to_thread.run_sync(
                lock.try_acquire, functools.partial(endpoint_for, settings.home)
            )
        except OSError as exc:  # a home we may only read: the lock lives beside the socket
            log.info("cannot lock %s: %s", lock.path, exc)
            if not lock.fallback:
                with contextlib.suppress(OSError):
                    lock = EngineLock(settings.home, fallback=True)
                    continue
            await _run_unowned(settings, writer, _replay(relay.take_unanswered(), lines), stop)
            return
        if owned:
            # A moved home's lock (the record was written before its owner let go):
            # let go too, and follow. Else finish a move its owner left unfinished.
            home, notes = await anyio.to_thread.run_sync(resolve_home, settings.home)
            if home != settings.home:
                await anyio.to_thread.run_sync(lock.release)
                continue
            for note in notes:
                log.warning("%s", note)
            log.info("this process owns %s", settings.home)
            await anyio.to_thread.run_sync(wait_for_writer_to_end, lock.previous or previous)
            await _run_engine(settings, writer, _replay(relay.take_unanswered(), lines), lock, stop)
            return
        owner = previous = await anyio.to_thread.run_sync(lock.owner)
        if owner is not None and (owner.elsewhere() or owner.hung(settings.lock_timeout_ms)):
            await _run_unowned(settings, writer, _replay(relay.take_unanswered(), lines), stop)
            return
        connection = None
        if owner is not None and pid_alive(owner.pid):
            with contextlib.suppress(OSError):
                connection = await connect(owner.endpoint)
        if connection is None:
            if not announced_wait:
                log.info("waiting for the owner of %s to listen or exit", settings.home)
                announced_wait = True
            await anyio.sleep(OWNER_POLL)
            continue
        assert owner is not None
        log.info("attached to process %d, the owner of %s", owner.pid, settings.home)
        announced_wait = False
        outcome = await _relay_while_alive(
            settings, relay, connection, lines, lock, owner.pid, stop
        )
        if outcome == Outcome.CLIENT_DONE:
            return
        if outcome is None:
            await _run_unowned(settings, writer, _replay(relay.take_unanswered(), lines), stop)
            return
        log.info("the owner (process %d) went away: taking over or reattaching", owner.pid)


async def _relay_while_alive(
    settings: Settings,
    relay: Relay,
    connection: Connection,
    lines: Lines,
    lock: EngineLock,
    owner_pid: int,
    stop: anyio.Event,
) -> Outcome | None:
    """Relay until the client or the owner leaves; None when the owner hangs (holds our
    requests past the lock timeout without a heartbeat)."""
    outcome: Outcome | None = None
    async with anyio.create_task_group() as group:

        async def relay_all() -> None:
            nonlocal outcome
            outcome = await relay.run(connection, lines)
            group.cancel_scope.cancel()

        async def watch() -> None:
            while True:
                await anyio.sleep(HUNG_CHECK)
                if not relay.unanswered:
                    continue
                info = await anyio.to_thread.run_sync(_owner_now, lock)
                if info and info.pid == owner_pid and info.hung(settings.lock_timeout_ms):
                    group.cancel_scope.cancel()
                    return

        async def until_stopped() -> None:  # a signal, or our parent died
            nonlocal outcome
            await stop.wait()
            outcome = Outcome.CLIENT_DONE
            group.cancel_scope.cancel()

        group.start_soon(relay_all)
        group.start_soon(watch)
        group.start_soon(until_stopped)
    return outcome


def _owner_now(lock: EngineLock) -> OwnerInfo | None:
    """The owner as its lock says, where the home is now: the lock of a home it moved
    is no longer kept up (blocking)."""
    home = current_home(lock.home)
    return (lock if home == lock.home else EngineLock(home)).owner()


async def _run_unowned(
    settings: Settings,
    writer: LineWriter,
    lines: AsyncIterator[bytes | TooLong],
    stop: anyio.Event,
) -> None:
    """The owner hangs (or runs on another machine sharing the home), or no ownership
    can be taken at all: run an engine of our own, as every sidecar did before homes had
    owners. The task locks (with their timeouts) keep two engines from writing one part."""
    log.warning("no usable owner of %s: running an engine of our own", settings.home)
    await _run_engine(settings, writer, lines, None, stop)


async def _replay(first: list[bytes], lines: Lines) -> AsyncIterator[bytes | TooLong]:
    """Requests the old owner left unanswered, then stdin."""
    for replayed in first:
        yield replayed
    async for line in lines:
        yield line


async def _run_engine(
    settings: Settings,
    writer: LineWriter,
    lines: AsyncIterator[bytes | TooLong],
    lock: EngineLock | None,
    stop: anyio.Event,
) -> None:
    network = Network(settings.proxy, settings.ca_bundle, settings.max_connections_per_host)
    transfer = TransferClient(settings)
    client = JsonClient(settings, network)
    hub = Hub(writer, settings.max_line_bytes)
    ownership = Ownership(lock) if lock is not None else None
    try:
        async with anyio.create_task_group() as group:
            manager = Manager(settings, client, network, transfer, notify=hub.notify)
            manager.ownership = ownership
            methods = build_methods(manager, stop.set)
            server = RpcServer(writer, methods)

            async def serve_stdin() -> None:
                await server.serve(lines)
                log.info("stdin closed: shutting down")
                manager.keeper.leases.drop_client(STDIO)  # its leases end with it
                stop.set()

            attached = itertools.count(1)

            async def serve_one(connection: Connection) -> None:
                client_id = f"attached-{next(attached)}"  # leases end with the connection
                try:
                    await hub.serve_connection(
                        connection, build_methods(manager, stop.set, client=client_id)
                    )
                finally:
                    manager.keeper.leases.drop_client(client_id)

            await group.start(transfer.serve)
            await group.start(manager.serve)
            if ownership is not None:
                await group.start(ownership.serve, serve_one)
            group.start_soon(serve_stdin)
            group.start_soon(_load_the_rest, manager, server)
            if ownership is not None:
                group.start_soon(_heartbeat, settings, ownership, transfer)
            await stop.wait()
            await server.drain(SHUTDOWN_ANSWER_TIMEOUT)
            await hub.drain(SHUTDOWN_ANSWER_TIMEOUT)
            group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
            network.close()
            # Last: a waiting client takes over only once our tasks stopped writing.
            if ownership is not None:
                await anyio.to_thread.run_sync(ownership.release)


async def _load_the_rest(manager: Manager, server: RpcServer) -> None:
    """What getModelPath does not need loads once its answer is out (Manager.complete)."""
    await server.answered.wait()
    manager.complete_soon()


async def _heartbeat(settings: Settings, ownership: Ownership, transfer: TransferClient) -> None:
    while True:
        await anyio.sleep(min(settings.lock_refresh, HEARTBEAT_MAX))
        try:
            await anyio.to_thread.run_sync(ownership.refresh, transfer.pid)
        except OSError as exc:
            log.warning("cannot refresh %s: %s", ownership.lock.path, exc)


__all__ = ["ModelManagerError", "run"]
