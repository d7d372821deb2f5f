"""The process the app starts. It owns stdin and stdout, answers ``getModelPath``
itself and relays every other line to and from its engine: a child process that
runs the sidecar proper (``sidecar.app``) at background priority.

    app ──stdin──▶ front ──pipe──▶ engine: manager, downloads, registry
    app ◀─stdout── front ◀─pipe─── engine
                     └ getModelPath answered here, from the availability the engine
                       sends ahead of any message that follows a change

Why a process of its own: at line speed the engine's download threads keep its GIL
busy, and a getModelPath answered there waited for it (p99 7-10 ms with three
downloads at full speed). Nothing in the front competes with the answer.

The engine dies with the front. On Linux the kernel kills it (PR_SET_PDEATHSIG),
so a kill -9 of the front is a kill -9 of both, as it was of the one process; on
other systems the engine sees its stdin close and its parent go. Signals to the
front are passed on, and the front leaves with the engine's exit code."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus

from sidecar.availability import Availability
from sidecar.config import Settings
from sidecar.errors import ModelNotAvailable
from sidecar.rpc.framing import LineSplitter, TooLong
from sidecar.rpc.messages import (
    AVAILABILITY_NEWS,
    encode_message,
    error_message,
    parse_json,
    too_long_error,
)
from sidecar.rpc.stdio import READ_SIZE, LineWriter, StdinReader, claim_stdout, run_in_own_thread
from sidecar.watchdog import watch_parent

log = logging.getLogger(__name__)

MAX_NAME = 128  # as ``wire.Name``: anything else goes to the engine, which explains it
# A plain getModelPath is a few hundred bytes: longer lines go to the engine unparsed, so a
# 16 MiB line of a million values never becomes objects in the process the app started.
MAX_LANE_LINE = 64 * 1024
ENGINE_LINE_LIMIT = 1 << 30  # the engine is trusted; a bound only against a runaway
NEWS_PREFIX = encode_message({"jsonrpc": "2.0", "method": AVAILABILITY_NEWS})[:-2] + b',"params":'
SIGNALS_PASSED_ON = (
    () if sys.platform == "win32" else (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
)


class FrontLane:
    """Answers a plain ``getModelPath`` request from the engine's last availability;
    anything else (other methods, batches, odd params, no availability yet) is None
    and goes to the engine, whose answer is the reference (a property test holds
    the two to the same answers)."""

    def __init__(self) -> None:
        self.availability: Availability | None = None  # replaced whole by the relay thread

    def __call__(self, line: bytes) -> bytes | None:
        availability = self.availability
        if availability is None or len(line) > MAX_LANE_LINE or b'"getModelPath"' not in line:
            return None
        try:
            query = _plain_query(parse_json(line.decode("utf-8")))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        if query is None:
            return None
        request_id, model_id, version = query
        try:
            result = availability.lookup(model_id, version)
        except ModelNotAvailable as exc:
            return encode_message(error_message(exc.code, exc.message, exc.to_data(), request_id))
        return encode_message({"jsonrpc": "2.0", "result": result, "id": request_id})


def _plain_query(message: Any) -> tuple[str | int, str, str | None] | None:
    if not (
        isinstance(message, dict)
        and message.keys() <= {"jsonrpc", "method", "params", "id"}
        and message.get("jsonrpc") == "2.0"
        and message.get("method") == "getModelPath"
        and isinstance(message.get("id"), str | int)
        and not isinstance(message["id"], bool)
        and isinstance(params := message.get("params"), dict)
        and params.keys() <= {"modelId", "version"}
        and _is_name(params.get("modelId"))
        and (params.get("version") is None or _is_name(params["version"]))
    ):
        return None
    return message["id"], params["modelId"], params.get("version")


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME


class Front:
    def __init__(self, settings: Settings, engine: subprocess.Popen[bytes]) -> None:
        self.settings = settings
        self.engine = engine
        self.lane = FrontLane()
        self.writer = LineWriter(claim_stdout())
        assert engine.stdin is not None
        self.requests = LineWriter(engine.stdin)  # a dead engine only marks it broken
        self._relay_limiter = anyio.CapacityLimiter(1)

    async def run(self) -> int:
        """Serve until the engine has ended; its exit code."""
        reader = StdinReader(
            sys.stdin.fileno(), self.settings.max_line_bytes, self.lane, self.writer
        )
        relayed = anyio.Event()
        async with anyio.create_task_group() as group:
            await group.start(self.writer.run_answer_writer)
            await group.start(self._relay_engine_output, relayed)
            await group.start(reader.run)
            group.start_soon(self._forward_requests, reader)
            group.start_soon(self._pass_on_signals)
            group.start_soon(watch_parent, self.settings.parent_pid, self._stop_engine)
            await relayed.wait()  # the engine closed its stdout: it is ending
            code = await anyio.to_thread.run_sync(self.engine.wait)
            group.cancel_scope.cancel()
        if code < 0:  # killed by a signal: report it the way a shell does
            log.warning("engine killed by signal %d", -code)
            return 128 - code
        return code

    async def _forward_requests(self, reader: StdinReader) -> None:
        try:
            async for line in reader.lines():
                if isinstance(line, TooLong):  # never reached the engine: refused here
                    self.writer.answer_now(encode_message(too_long_error(line.limit)))
                else:
                    await self.requests.send_raw(line + b"\n")
        finally:
            assert self.engine.stdin is not None
            self.engine.stdin.close()  # end of input for the engine too: it shuts down

    async def _relay_engine_output(
        self, relayed: anyio.Event, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await run_in_own_thread(self._relay, self._relay_limiter, task_status)
        finally:
            relayed.set()

    def _relay(self, started: Callable[[], None]) -> None:
        assert self.engine.stdout is not None
        answers = self.engine.stdout.fileno()
        splitter = LineSplitter(ENGINE_LINE_LIMIT)
        anyio.from_thread.run_sync(started)
        while data := _read(answers):
            for_app, news = [], None
            for line in splitter.feed(data):
                if isinstance(line, bytes):
                    if line.startswith(NEWS_PREFIX):
                        news = line
                    else:
                        for_app.append(line)
            if news is not None:  # before the lines: what follows news must find it taken
                self._take_news(news)
            if for_app:  # one write: the fast lane's answers only ever fall between lines
                self.writer.write_now(b"\n".join(for_app) + b"\n")

    def _take_news(self, line: bytes) -> None:
        try:
            self.lane.availability = Availability.from_wire(parse_json(line.decode())["params"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("unreadable availability from the engine (%s): asking it instead", exc)
            self.lane.availability = None

    async def _pass_on_signals(self) -> None:
        if not SIGNALS_PASSED_ON:
            return
        with anyio.open_signal_receiver(*SIGNALS_PASSED_ON) as signals:
            async for received in signals:
                log.info("signal %s: passed on to the engine", received)
                self._signal_engine(received)

    def _stop_engine(self) -> None:
        if sys.platform == "win32":
            self.engine.terminate()
        else:
            self._signal_engine(signal.SIGTERM)

    def _signal_engine(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # it ended already
            self.engine.send_signal(signum)


def start_engine(argv: list[str]) -> subprocess.Popen[bytes]:
    """The engine, on the same flags. Call before any thread starts (see _die_with)."""
    command = [sys.executable, "-m", "sidecar", *argv, "--engine-for", str(os.getpid())]
    if sys.platform == "win32":
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        # Its own process group: a Ctrl-C in a terminal reaches it once, passed on by us.
        start_new_session=True,
        preexec_fn=_die_with(os.getpid()) if sys.platform == "linux" else None,
    )


def _die_with(parent: int) -> Callable[[], None]:
    """In the child before exec: be killed when the thread that started us ends (the
    front's main thread, which lives as long as the front) or if it is gone already."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def arrange() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return arrange


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, READ_SIZE)
    except OSError:
        return b""
