"""The protocol's byte streams. stdin is read by a worker thread (works on Windows,
where pipes cannot be polled), which frames the lines and answers the fast lane's
requests itself: ``getModelPath`` never waits behind an event loop that is busy with
downloads. stdout is taken for the protocol alone, and fd 1 is pointed at stderr so
a stray print or a C library cannot corrupt the stream."""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import IO, Any

import anyio
from anyio.abc import TaskStatus

from sidecar.rpc.framing import LineSplitter, TooLong

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
QUEUED_LINES = 256  # lines waiting for the loop before the reader stops reading (backpressure)

# A line's answer when it can be given on the reader thread, else None (the loop serves it).
FastLane = Callable[[bytes], bytes | None]


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
        self.thread_id = 0  # the reading thread's native id, once it runs

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Read until end of input; started once the reading thread runs. Cancelling
        abandons the thread blocked in read(); the process leaves with os._exit."""
        running = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(
                partial(
                    anyio.to_thread.run_sync,
                    self._pump,
                    running.set,
                    abandon_on_cancel=True,
                    limiter=self._pump_limiter,
                )
            )
            await running.wait()
            task_status.started()

    def _pump(self, started: Callable[[], None]) -> None:
        self.thread_id = threading.get_native_id()
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
                    self._writer.write_now(answer)
            if not data:
                self._queue.put(_EndOfInput())
                return

    def _answer_here(self, line: bytes) -> bytes | None:
        try:
            return self._fast_lane(line)
        except Exception:  # the loop answers it instead, with the usual error handling
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


def encode_message(message: Any) -> bytes:
    # ensure_ascii: no raw U+2028/U+2029 (or any non-ASCII) that a line reader might split on.
    return (
        json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode(
            "ascii"
        )
        + b"\n"
    )


class LineWriter:
    """One writer: each message is one whole line, never interleaved. The event loop
    writes through ``send`` (in order, in a worker thread); the stdin thread through
    ``write_now``."""

    def __init__(self, output: IO[bytes]) -> None:
        self._output = output
        self._lock = anyio.Lock()  # the loop's messages go out in the order they were sent
        self._write_lock = threading.Lock()  # between the loop's writes and the fast lane's
        self._limiter = anyio.CapacityLimiter(1)  # never queued behind download threads
        self.broken = False

    async def send_raw(self, line: bytes) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(self.write_now, line, limiter=self._limiter)

    async def send(self, message: Any) -> None:
        await self.send_raw(encode_message(message))

    def write_now(self, data: bytes) -> None:
        """Blocking: write one line."""
        with self._write_lock:
            if self.broken:
                return
            try:
                view = memoryview(data)
                while view:
                    written = self._output.write(view)
                    view = view[written or 0 :]
            except OSError:  # BrokenPipeError among them: the reader is gone, EOF ends us
                self.broken = True
