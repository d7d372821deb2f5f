"""The protocol's byte streams. stdin is read by a worker thread (works on Windows,
where pipes cannot be polled); stdout is taken for the protocol alone, and fd 1 is
pointed at stderr so a stray print or a C library cannot corrupt the stream."""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

import anyio
from anyio.abc import ByteReceiveStream

READ_SIZE = 1 << 16


class FdReceiveStream(ByteReceiveStream):
    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        data = await anyio.to_thread.run_sync(os.read, self._fd, max_bytes, abandon_on_cancel=True)
        if not data:
            raise anyio.EndOfStream
        return data

    async def aclose(self) -> None:
        pass


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
    """One writer lock: each message is one whole line, never interleaved."""

    def __init__(self, output: IO[bytes]) -> None:
        self._output = output
        self._lock = anyio.Lock()
        self._limiter = anyio.CapacityLimiter(1)  # never queued behind download threads
        self.broken = False

    async def send_raw(self, line: bytes) -> None:
        async with self._lock:
            if self.broken:
                return
            try:
                await anyio.to_thread.run_sync(self._write, line, limiter=self._limiter)
            except (BrokenPipeError, OSError):
                self.broken = True  # the reader is gone; the stdin EOF ends us soon

    async def send(self, message: Any) -> None:
        await self.send_raw(encode_message(message))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._output.write(view)
            view = view[written or 0 :]
