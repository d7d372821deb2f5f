"""The protocol's byte streams. A pipe or socket is read and written on the event loop
itself (no thread hop between a request and its answer); anything that cannot be
polled (a terminal, a file, any pipe on Windows) is read by a thread of its own and
written from another. stdout is taken for the protocol alone, and fd 1 is pointed at
stderr so a stray print or a C library cannot corrupt the stream."""

from __future__ import annotations

import logging
import os
import queue
import stat
import sys
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import IO, Any, Protocol

import anyio
from anyio.abc import TaskStatus

from sidecar.rpc.framing import LineSplitter, TooLong
from sidecar.rpc.messages import encode_message

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
QUEUED_LINES = 256  # lines waiting for the loop before the reader stops reading (backpressure)


async def run_in_own_thread(
    work: Callable[[Callable[[], None]], None],
    limiter: anyio.CapacityLimiter,
    task_status: TaskStatus[None],
) -> None:
    """Run blocking ``work`` in a worker thread of its own for as long as it runs;
    started once ``work`` calls the function it is given. Cancelling abandons it."""
    running = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(
            partial(
                anyio.to_thread.run_sync, work, running.set, abandon_on_cancel=True, limiter=limiter
            )
        )
        await running.wait()
        task_status.started()


class _EndOfInput:
    pass


def pollable(fd: int) -> bool:
    """Whether the loop can wait on ``fd``. Only a pipe or a socket is made
    non-blocking: a terminal's flags are shared with the shell."""
    if sys.platform == "win32":
        return False
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class StdinReader:
    def __init__(self, fd: int, max_line_bytes: int) -> None:
        self._fd = fd
        self._on_loop = pollable(fd)
        if self._on_loop:
            os.set_blocking(fd, False)
        self._splitter = LineSplitter(max_line_bytes)
        self._queue: queue.Queue[bytes | TooLong | _EndOfInput] = queue.Queue(QUEUED_LINES)
        # Own threads: the pump and the loop's waiter never queue behind download threads.
        self._pump_limiter = anyio.CapacityLimiter(1)
        self._waiter_limiter = anyio.CapacityLimiter(1)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Read until end of input; started once the reading thread runs. Cancelling
        abandons the thread blocked in read(); the process leaves with os._exit."""
        if self._on_loop:  # nothing to run: lines() reads on the loop
            task_status.started()
            return
        await run_in_own_thread(self._pump, self._pump_limiter, task_status)

    def _pump(self, started: Callable[[], None]) -> None:
        anyio.from_thread.run_sync(started)
        while True:
            try:
                data = os.read(self._fd, READ_SIZE)
            except OSError as exc:  # stdin closed under us, or an I/O error: end of input
                log.warning("stdin unreadable (%s): treating it as closed", exc)
                data = b""
            for line in self._splitter.feed(data) if data else self._splitter.finish():
                self._queue.put(line)
            if not data:
                self._queue.put(_EndOfInput())
                return

    async def lines(self) -> AsyncIterator[bytes | TooLong]:
        """The lines, for the event loop."""
        if self._on_loop:
            async for polled in self._lines_on_loop():
                yield polled
            return
        while True:
            line = await anyio.to_thread.run_sync(
                self._queue.get, abandon_on_cancel=True, limiter=self._waiter_limiter
            )
            if isinstance(line, _EndOfInput):
                return
            yield line

    async def _lines_on_loop(self) -> AsyncIterator[bytes | TooLong]:
        while True:
            try:
                data = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            except OSError as exc:  # stdin closed under us, or an I/O error: end of input
                log.warning("stdin unreadable (%s): treating it as closed", exc)
                data = b""
            for line in self._splitter.feed(data) if data else self._splitter.finish():
                yield line
            if not data:
                return


def claim_stdout() -> IO[bytes]:
    """A private handle on the real stdout; fd 1 and sys.stdout now go to stderr."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


class Writer(Protocol):
    """Where a server's answers go: stdout's LineWriter, or an attached client's."""

    async def send_raw(self, line: bytes) -> None: ...

    async def send(self, message: Any) -> None: ...


class LineWriter:
    """One writer: each message is one whole line, never interleaved, in the order the
    event loop sent them (written on the loop, or by a thread of its own where the
    output cannot be polled)."""

    def __init__(self, output: IO[bytes]) -> None:
        self._output = output  # kept open for the process's life
        self._fd = output.fileno()
        self._nonblocking = pollable(self._fd)
        if self._nonblocking:
            os.set_blocking(self._fd, False)
        self._lock = anyio.Lock()  # the loop's messages go out in the order they were sent
        self._limiter = anyio.CapacityLimiter(1)  # never queued behind download threads
        self.broken = False

    async def send_raw(self, line: bytes) -> None:
        async with self._lock:
            if not self._nonblocking:
                await anyio.to_thread.run_sync(self.write_now, line, limiter=self._limiter)
                return
            with anyio.CancelScope(shield=True):  # half a line would corrupt the stream
                await self._write_on_loop(line)

    async def _write_on_loop(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.broken:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:  # the pipe is full: the reader is slow, wait for room
                await anyio.wait_writable(self._fd)
            except OSError:  # BrokenPipeError among them: the reader is gone, EOF ends us
                self.broken = True

    async def send(self, message: Any) -> None:
        await self.send_raw(encode_message(message))

    def write_now(self, data: bytes) -> None:
        """Blocking (a terminal, a file, a pipe on Windows): write one line."""
        if self.broken:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:  # BrokenPipeError among them: the reader is gone, EOF ends us
            self.broken = True
