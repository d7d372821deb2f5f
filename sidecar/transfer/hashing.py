"""SHA-256 of files on disk (blocking: call through ``anyio.to_thread``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

# hashlib releases the GIL for buffers this large, so hashing runs beside the event loop.
READ_SIZE = 4 * 1024 * 1024


def hash_into(hasher: hashlib._Hash, path: Path, limit: int | None = None) -> int:
    """Feed up to ``limit`` bytes of ``path`` into ``hasher``; return the count fed."""
    fed = 0
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while limit is None or fed < limit:
            want = READ_SIZE if limit is None else min(READ_SIZE, limit - fed)
            count = handle.readinto(view[:want])
            if not count:
                break
            hasher.update(view[:count])
            fed += count
    return fed


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    hash_into(hasher, path)
    return hasher.hexdigest()
