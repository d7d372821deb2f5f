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


def sha256_file_and_pieces(path: Path, piece_size: int | None) -> tuple[str, list[str] | None]:
    """The file's SHA-256 and, when it is larger than one piece, each piece's (publish
    only: the download path hashes each byte once, see ``sidecar.transfer.pieces``)."""
    whole = hashlib.sha256()
    pieces: list[str] = []
    piece = hashlib.sha256()
    in_piece = 0
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(view):
            whole.update(view[:count])
            done = 0
            while piece_size is not None and done < count:
                take = min(count - done, piece_size - in_piece)
                piece.update(view[done : done + take])
                done, in_piece = done + take, in_piece + take
                if in_piece == piece_size:
                    pieces.append(piece.hexdigest())
                    piece, in_piece = hashlib.sha256(), 0
    if in_piece:
        pieces.append(piece.hexdigest())
    return whole.hexdigest(), pieces if piece_size is not None and len(pieces) > 1 else None
