"""Wires the services together under one task group and runs until told to stop."""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys

import anyio

from sidecar import __version__
from sidecar.config import Settings
from sidecar.core.leases import STDIO
from sidecar.core.manager import Manager
from sidecar.logs import setup_logging
from sidecar.rpc.methods import build_methods
from sidecar.rpc.server import RpcServer
from sidecar.rpc.stdio import LineWriter, StdinReader, claim_stdout
from sidecar.store.layout import HomeLayout
from sidecar.store.relocate import resolve_home
from sidecar.transfer.client import TransferClient
from sidecar.transfer.http import JsonClient
from sidecar.transfer.network import Network
from sidecar.watchdog import watch_parent

log = logging.getLogger(__name__)

SHUTDOWN_ANSWER_TIMEOUT = 2.0  # let the answer to `shutdown` (and other quick ones) go out


async def _on_signals(stop: anyio.Event) -> None:
    if sys.platform == "win32":
        return
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for received in signals:
            log.info("signal %s: shutting down", received)
            stop.set()
            return


async def run(settings: Settings) -> None:
    # A home moved by moveStore forwards to its new place (sidecar.store.relocate).
    home, notes = await anyio.to_thread.run_sync(resolve_home, settings.home)
    settings = dataclasses.replace(settings, home=home)
    layout = HomeLayout(settings.home)
    setup_logging(layout, settings.log_level)
    for note in notes:
        log.warning("%s", note)
    log.info(
        "sidecar %s starting: home=%s repositories=%s",
        __version__, settings.home, list(settings.repositories),
    )  # fmt: skip
    writer = LineWriter(claim_stdout())
    stop = anyio.Event()
    network = Network(settings.proxy, settings.ca_bundle, settings.max_connections_per_host)
    transfer = TransferClient(settings)
    client = JsonClient(settings, network)
    async with anyio.create_task_group() as group:
        server: RpcServer
        manager = Manager(
            settings, client, network, transfer, notify=lambda m, p: server.notify(m, p)
        )
        server = RpcServer(writer, build_methods(manager, stop.set))
        reader = StdinReader(sys.stdin.fileno(), settings.max_line_bytes)

        async def serve_stdin() -> None:
            async with anyio.create_task_group() as stdin:
                await stdin.start(reader.run)
                await server.serve(reader.lines())
                stdin.cancel_scope.cancel()
            log.info("stdin closed: shutting down")
            manager.keeper.leases.drop_client(STDIO)  # its leases end with it
            stop.set()

        await group.start(transfer.serve)
        await group.start(manager.serve)
        group.start_soon(serve_stdin)
        group.start_soon(watch_parent, settings.parent_pid, stop.set)
        group.start_soon(_on_signals, stop)
        await stop.wait()
        await server.drain(SHUTDOWN_ANSWER_TIMEOUT)
        group.cancel_scope.cancel()
    with anyio.CancelScope(shield=True):
        await client.aclose()
    network.close()
    log.info("sidecar stopped")
