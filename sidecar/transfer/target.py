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


@dataclass(frozen=True)
class FileTarget:
    part: Path
    expected_size: int | None
    sha256: str | None

    @property
    def record_path(self) -> Path:
        return self.part.with_name(self.part.name + ".json")
