"""The protocol's byte streams. stdin is read by a worker thread (works on Windows,
where pipes cannot be polled), which frames the lines and answers the fast lane's
requests itself: ``getModelPath`` never waits behind an event loop that is busy with
downloads. stdout is taken for the protocol alone, and fd 1 is pointed at stderr so
a stray print or a C library cannot corrupt the stream."""

from __future__ import annotations

import logging
import os
import queue
import select
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import IO, Any

import anyio
from anyio.abc import TaskStatus

from sidecar.rpc.framing import LineSplitter, TooLong
from sidecar.rpc.messages import encode_message

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
QUEUED_LINES = 256  # lines waiting for the loop before the reader stops reading (backpressure)

# A line's answer when it can be given on the reader thread, else None (the loop serves it).
FastLane = Callable[[bytes], bytes | None]


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


class StdinReader:
    def __init__(self, fd: int, max_line_bytes: int, fast_lane: FastLane, writer: LineWriter):
        self._fd = fd
        self._splitter = LineSplitter(max_line_bytes)
        self._fast_lane = fast_lane
        self._writer = writer
        self._queue: queue.Queue[bytes | TooLong | _EndOfInput] = queue.Queue(QUEUED_LINES)
        # Own threads: the pump and the loop's waiter never queue behind download threads.
        self._pump_limiter = anyio.CapacityLimiter(1)
        self._waiter_limiter = anyio.CapacityLimiter(1)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Read until end of input; started once the reading thread runs. Cancelling
        abandons the thread blocked in read(); the process leaves with os._exit."""
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
                answer = self._answer_here(line) if isinstance(line, bytes) else None
                if answer is None:
                    self._queue.put(line)
                else:
                    self._writer.answer_now(answer)
            if not data:
                self._queue.put(_EndOfInput())
                return

    def _answer_here(self, line: bytes) -> bytes | None:
        # jsonrpcserver turns a handler's exception into an error answer itself; this
        # guards the lane's own code, and the loop then answers the line instead.
        try:
            return self._fast_lane(line)
        except Exception:
            log.exception("fast lane failed; the event loop answers instead")
            return None

    async def lines(self) -> AsyncIterator[bytes | TooLong]:
        """The lines the fast lane did not answer, for the event loop."""
        while True:
            line = await anyio.to_thread.run_sync(
                self._queue.get, abandon_on_cancel=True, limiter=self._waiter_limiter
            )
            if isinstance(line, _EndOfInput):
                return
            yield line


def claim_stdout() -> IO[bytes]:
    """A private handle on the real stdout; fd 1 and sys.stdout now go to stderr."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


class LineWriter:
    """One writer: each message is one whole line, never interleaved. The event loop
    writes through ``send`` (in order, in a worker thread). The stdin thread never
    blocks on a full stdout (``answer_now``): a client that writes a burst of requests
    before it reads any answer would otherwise deadlock with us."""

    def __init__(self, output: IO[bytes]) -> None:
        self._output = output  # kept open for the process's life
        self._fd = output.fileno()
        # Only a pipe is made non-blocking: a terminal's flags are shared with the shell.
        self._nonblocking = sys.platform != "win32" and stat.S_ISFIFO(os.fstat(self._fd).st_mode)
        if self._nonblocking:
            os.set_blocking(self._fd, False)
        self._lock = anyio.Lock()  # the loop's messages go out in the order they were sent
        self._write_lock = threading.Lock()  # whole lines, whichever thread writes
        self._limiter = anyio.CapacityLimiter(1)  # never queued behind download threads
        self._answers: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._answer_limiter = anyio.CapacityLimiter(1)
        self.broken = False
        # What must go out before each message of the loop's (the engine's news for its front).
        self.announce: Callable[[], bytes] = bytes

    async def run_answer_writer(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Write the stdin thread's queued answers until cancelled; the thread then
        ends after the answers queued before it."""
        try:
            await run_in_own_thread(self._write_answers, self._answer_limiter, task_status)
        finally:
            self._answers.put(None)  # the answer writer's last item

    def _write_answers(self, started: Callable[[], None]) -> None:
        anyio.from_thread.run_sync(started)
        # A worker thread that never returns keeps the interpreter from exiting.
        while (line := self._answers.get()) is not None:
            self.write_now(line)

    def answer_now(self, line: bytes) -> None:
        """From the stdin thread, never blocking. Written at once when stdout has room
        (the usual case: a hand-off to another thread costs the answer a GIL wait),
        else queued for the answer writer."""
        if (
            self._nonblocking
            and len(line) <= select.PIPE_BUF
            and self._answers.empty()
            and self._write_lock.acquire(blocking=False)
        ):
            try:
                if self.broken:
                    return
                os.write(self._fd, line)  # at most PIPE_BUF to a pipe: all or nothing
                return
            except BlockingIOError:
                pass  # the pipe is full: the answer writer waits for room
            except OSError:
                self.broken = True
                return
            finally:
                self._write_lock.release()
        self._answers.put(line)

    async def send_raw(self, line: bytes) -> None:
        async with self._lock:
            data = self.announce() + line
            if data:
                await anyio.to_thread.run_sync(self.write_now, data, limiter=self._limiter)

    async def send(self, message: Any) -> None:
        await self.send_raw(encode_message(message))

    def write_now(self, data: bytes) -> None:
        """Blocking: write one line."""
        with self._write_lock:
            if self.broken:
                return
            view = memoryview(data)
            try:
                while view:
                    try:
                        view = view[os.write(self._fd, view) :]
                    except BlockingIOError:  # our non-blocking pipe is full: wait for room
                        poller = select.poll()
                        poller.register(self._fd, select.POLLOUT)
                        poller.poll()
            except OSError:  # BrokenPipeError among them: the reader is gone, EOF ends us
                self.broken = True
