"""What the store quota counts, read straight from the disk by the tests."""

from __future__ import annotations

import os
from pathlib import Path


def store_bytes_on_disk(home: Path) -> int:
    """models/ and temp/, each inode once (a reused file is linked, not copied), lock
    files aside."""
    seen: dict[tuple[int, int], int] = {}
    for folder in (home / "models", home / "temp"):
        for top, _dirs, files in os.walk(folder):
            for name in files:
                if not name.endswith(".lock"):
                    info = (Path(top) / name).lstat()
                    seen[(info.st_dev, info.st_ino)] = info.st_size
    return sum(seen.values())
