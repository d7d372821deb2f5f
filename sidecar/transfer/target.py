"""What a transfer job fills, and how it reports: shared by the sidecar and its worker
(and importing nothing of the HTTP path, so the sidecar starts small)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Called with how many bytes of the file are on disk now (it drops when a part restarts).
Progress = Callable[[int], None]
# Called with the file's full size when a manifest did not give it and the server does.
SizeLearned = Callable[[int], None]


# Called with an event the task's history keeps: (code, message in the user's words).
Notice = Callable[[str, str], None]


@dataclass(frozen=True)
class Pieces:
    """The manifest's piece hashes of one file: ``digests[i]`` is the SHA-256 of bytes
    ``[i * size, (i + 1) * size)`` (the last piece is shorter)."""

    size: int
    digests: tuple[str, ...]

    def span(self, index: int, total: int) -> tuple[int, int]:
        return index * self.size, min(total, (index + 1) * self.size)


@dataclass(frozen=True)
class FileTarget:
    part: Path
    expected_size: int | None
    sha256: str | None
    pieces: Pieces | None = None
    label: str = ""  # the file as the user knows it ("whisper@1.0.0 model.bin"), for messages

    @property
    def record_path(self) -> Path:
        return self.part.with_name(self.part.name + ".json")
