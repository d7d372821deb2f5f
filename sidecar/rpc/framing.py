"""Split a byte stream into lines of at most ``max_bytes``; an overlong line is
reported once and skipped, and the stream carries on after its newline.

Incremental and blocking-free, so the stdin thread frames lines itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TooLong:
    limit: int


class LineSplitter:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._skipping = False  # inside an overlong line, until its newline

    def feed(self, data: bytes) -> list[bytes | TooLong]:
        """The lines ``data`` completes (without newline or CR; blank ones dropped)."""
        scan_from = len(self._buffer)  # what is held has no newline: look only at the new
        self._buffer += data
        lines: list[bytes | TooLong] = []
        start = 0
        while (newline := self._buffer.find(b"\n", max(start, scan_from))) >= 0:
            line = bytes(self._buffer[start:newline])
            start = newline + 1
            if self._skipping:
                self._skipping = False
            else:
                self._keep(line, lines)
        del self._buffer[:start]
        if len(self._buffer) > self.max_bytes + 1:  # + 1: a CR may still be stripped
            # Memory stays bounded: the rest of an overlong line is dropped as it comes.
            if not self._skipping:
                lines.append(TooLong(self.max_bytes))
                self._skipping = True
            self._buffer.clear()
        return lines

    def finish(self) -> list[bytes | TooLong]:
        """At end of stream: the last line, if it had no newline."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        lines: list[bytes | TooLong] = []
        if not self._skipping:
            self._keep(rest, lines)
        return lines

    def _keep(self, line: bytes, lines: list[bytes | TooLong]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_bytes:
            lines.append(TooLong(self.max_bytes))
        elif line.strip():
            lines.append(line)
