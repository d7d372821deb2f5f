"""Split a byte stream into lines of at most ``max_bytes``; an overlong line is
reported once and skipped, and the stream carries on after its newline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from anyio.abc import ByteReceiveStream
from anyio.streams.buffered import BufferedByteReceiveStream


@dataclass(frozen=True)
class TooLong:
    limit: int


async def read_lines(stream: ByteReceiveStream, max_bytes: int) -> AsyncIterator[bytes | TooLong]:
    buffered = BufferedByteReceiveStream(stream)
    while True:
        try:
            line = await buffered.receive_until(b"\n", max_bytes)
        except anyio.IncompleteRead:
            rest = buffered.buffer
            if rest.strip():
                yield bytes(rest) if len(rest) <= max_bytes else TooLong(max_bytes)
            return
        except anyio.DelimiterNotFound:
            yield TooLong(max_bytes)
            if not await _skip_past_newline(buffered, max_bytes):
                return
            continue
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.strip():
            yield line


async def _skip_past_newline(buffered: BufferedByteReceiveStream, max_bytes: int) -> bool:
    """Drop bytes up to and including the next newline; False at end of stream."""
    await buffered.receive(len(buffered.buffer))  # the overlong prefix, held in the buffer
    while True:
        try:
            await buffered.receive_until(b"\n", max_bytes)
            return True
        except anyio.DelimiterNotFound:
            await buffered.receive(len(buffered.buffer))
        except anyio.IncompleteRead:
            return False
