"""Wires the services together under one task group and runs until told to stop."""

from __future__ import annotations

import logging
import signal
import sys

import anyio

from sidecar import __version__
from sidecar.config import Settings
from sidecar.http import make_client
from sidecar.layout import HomeLayout
from sidecar.logs import setup_logging
from sidecar.manager import Manager
from sidecar.network import Network
from sidecar.rpc.methods import build_fast_methods, build_methods
from sidecar.rpc.news import publish_availability
from sidecar.rpc.server import FastLane, RpcServer
from sidecar.rpc.stdio import LineWriter, StdinReader, claim_stdout
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
    layout = HomeLayout(settings.home)
    setup_logging(layout, settings.log_level)
    log.info(
        "sidecar %s starting: home=%s repositories=%s",
        __version__, settings.home, list(settings.repositories),
    )  # fmt: skip
    writer = LineWriter(claim_stdout())
    stop = anyio.Event()
    network = Network(settings.proxy, settings.ca_bundle, settings.max_connections_per_host)
    async with make_client(settings, network) as client, anyio.create_task_group() as group:
        server: RpcServer
        manager = Manager(settings, client, network, notify=lambda m, p: server.notify(m, p))
        server = RpcServer(writer, build_methods(manager, stop.set))
        fast_lane = FastLane(build_fast_methods(manager))
        reader = StdinReader(sys.stdin.fileno(), settings.max_line_bytes, fast_lane, writer)

        async def serve_stdin() -> None:
            async with anyio.create_task_group() as stdin:
                await stdin.start(writer.run_answer_writer)
                await stdin.start(reader.run)
                await server.serve(reader.lines())
                stdin.cancel_scope.cancel()
            log.info("stdin closed: shutting down")
            stop.set()

        await group.start(manager.serve)
        group.start_soon(serve_stdin)
        if settings.front_pid is not None:
            group.start_soon(publish_availability, writer, manager.library)
        group.start_soon(watch_parent, settings.front_pid or settings.parent_pid, stop.set)
        group.start_soon(_on_signals, stop)
        await stop.wait()
        await server.drain(SHUTDOWN_ANSWER_TIMEOUT)
        group.cancel_scope.cancel()
    network.close()
    log.info("sidecar stopped")
