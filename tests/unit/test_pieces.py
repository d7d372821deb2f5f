"""Piece hashes: the manifest field, what publish writes, and the book that tracks which
pieces are verified (kept whatever source they came from) and which sources sent bad
ones."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from model_repo.__main__ import main as repo_main
from sidecar.errors import UnsafeManifest
from sidecar.manifest import parse_model
from sidecar.transfer.hashing import sha256_file_and_pieces
from sidecar.transfer.pieces import (
    BAD_PIECES_PER_SOURCE,
    PieceBook,
    PieceHasher,
    SourceDropped,
)
from sidecar.transfer.record import PartRecord
from sidecar.transfer.target import FileTarget, Pieces
from tests.support.repo_helpers import publish_files

PIECE = 64 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pieces_of(data: bytes, size: int = PIECE) -> list[str]:
    return [sha(data[i : i + size]) for i in range(0, len(data), size)]


def entry(file: dict[str, object]) -> dict[str, object]:
    return {"id": "m", "versions": [{"version": "1", "files": [file]}]}


def test_a_manifest_with_piece_hashes_parses_and_one_without_still_does() -> None:
    data = os.urandom(3 * PIECE + 5)
    with_pieces = {
        "path": "a.bin", "size_bytes": len(data), "sha256": sha(data),
        "piece_size_bytes": PIECE, "piece_sha256": [d.upper() for d in pieces_of(data)],
    }  # fmt: skip
    parsed = parse_model(entry(with_pieces)).versions[0].files[0]
    assert parsed.piece_sha256 == pieces_of(data)  # lower-cased
    plain = parse_model(entry({"path": "a.bin", "size_bytes": 1, "sha256": "0" * 64}))
    assert plain.versions[0].files[0].piece_sha256 is None
    assert "piece_sha256" not in plain.model_dump(mode="json")["versions"][0]["files"][0]


@pytest.mark.parametrize(
    "change",
    [
        {"piece_sha256": ["0" * 64] * 3},  # one digest short
        {"piece_size_bytes": None},  # digests without a size
        {"piece_sha256": None},  # a size without digests
        {"piece_size_bytes": 1024},  # below the minimum
        {"piece_sha256": ["zz"] * 4},
    ],
)
def test_malformed_piece_hashes_are_an_unsafe_manifest(change: dict[str, object]) -> None:
    file = {
        "path": "a.bin", "size_bytes": 3 * PIECE + 5, "sha256": "0" * 64,
        "piece_size_bytes": PIECE, "piece_sha256": ["0" * 64] * 4,
    } | change  # fmt: skip
    with pytest.raises(UnsafeManifest):
        parse_model(entry(file))


def test_publish_lists_pieces_for_files_larger_than_one_piece(tmp_path: Path) -> None:
    big, small = os.urandom(5 * PIECE + 1), os.urandom(PIECE)
    result = publish_files(tmp_path / "s", "m", "1", {"big.bin": big, "small.bin": small},
                           piece_size=PIECE)  # fmt: skip
    files = {f.path: f for f in result.manifest.versions[0].files}
    assert files["big.bin"].piece_size_bytes == PIECE
    assert files["big.bin"].piece_sha256 == pieces_of(big)
    assert files["big.bin"].sha256 == sha(big)
    assert files["small.bin"].piece_sha256 is None  # one piece: its digest is the file's


def run_repo(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        repo_main(list(args))
    return int(exit_.value.code or 0)


def test_publish_cli_takes_a_piece_size_and_republishing_with_pieces_is_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    data = os.urandom(600_000)
    (source / "w.bin").write_bytes(data)
    storage = str(tmp_path / "storage")
    base = ["publish", str(source), "--storage", storage, "--id", "m", "--version", "1"]
    assert run_repo(*base, "--piece-size", "0") == 0
    assert run_repo(*base, "--piece-size", "256K") == 0  # same bytes: not a new version
    assert "unchanged" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "storage/models/m/1/manifest.json").read_text())
    assert "piece_sha256" not in manifest["versions"][0]["files"][0]
    assert run_repo(*base, "--version", "2", "--piece-size", "256K") == 0
    manifest = json.loads((tmp_path / "storage/models/m/2/manifest.json").read_text())
    assert manifest["versions"][0]["files"][0]["piece_sha256"] == pieces_of(data, 256 * 1024)
    assert run_repo(*base, "--piece-size", "1K") == 2  # usage: below the minimum


def test_sha256_file_and_pieces_agrees_with_slices(tmp_path: Path) -> None:
    for size in (0, 1, PIECE, PIECE + 1, 9 * PIECE - 3):
        data = os.urandom(size)
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        whole, pieces = sha256_file_and_pieces(path, PIECE)
        assert whole == sha(data)
        assert pieces == (pieces_of(data) if size > PIECE else None)


def book_for(tmp_path: Path, data: bytes) -> PieceBook:
    target = FileTarget(
        tmp_path / "x.part", len(data), sha(data), Pieces(PIECE, tuple(pieces_of(data))), "m@1 x"
    )
    return PieceBook(target)


def test_the_hasher_books_pieces_as_bytes_arrive_in_any_chunking(tmp_path: Path) -> None:
    data = bytearray(os.urandom(4 * PIECE + 100))
    book = book_for(tmp_path, bytes(data))
    data[2 * PIECE + 7] ^= 0xFF  # piece 2 arrives wrong
    hasher = PieceHasher(book, 0, "http://mirror-a:8080/m")
    view = memoryview(bytes(data))
    for start in range(0, len(view), 10_007):  # chunks that straddle piece ends
        hasher.update(view[start : start + 10_007])
    assert book.verified == {0, 1, 3, 4}
    assert book.bad == {2: {"http://mirror-a:8080/m"}}
    assert book.resume_point() == len(data)  # a bad piece is fetched alone, not streamed
    assert book.record_fields() == {"piece_size": PIECE, "verified": [(0, 2), (3, 5)]}
    assert [code for code, _ in book.pending] == ["PIECE_MISMATCH"]
    assert "m@1 x: bytes 131072-196607 (piece 3 of 5) from mirror-a:8080" in book.pending[0][1]


def test_the_hasher_drops_its_source_at_the_piece_that_was_one_too_many(tmp_path: Path) -> None:
    data = bytearray(os.urandom(6 * PIECE))
    book = book_for(tmp_path, bytes(data))
    for index in (1, 2, 4):
        data[index * PIECE] ^= 0xFF
    hasher = PieceHasher(book, 0, "http://mirror-a/m")
    view = memoryview(bytes(data))
    hasher.update(view[: 5 * PIECE - 1])  # pieces 1 and 2 bad: still trusted
    assert not book.is_dropped("http://mirror-a/m")
    with pytest.raises(SourceDropped, match="mirror-a sends pieces that do not match"):
        hasher.update(view[5 * PIECE - 1 : 5 * PIECE])  # piece 4, the third bad one
    assert book.verified == {0, 3}


def test_a_source_is_dropped_at_its_third_bad_piece_and_earlier_bytes_count_against_none(
    tmp_path: Path,
) -> None:
    data = os.urandom(6 * PIECE)
    book = book_for(tmp_path, data)
    assert not book.check(0, "0" * 64, None)  # left by an earlier attempt: no one's fault
    assert not book.bad and not book.pending
    for index in range(BAD_PIECES_PER_SOURCE):
        assert not book.is_dropped("http://a/")
        book.check(index, "0" * 64, "http://a/")
    assert book.is_dropped("http://a/") and not book.is_dropped("http://b/")
    codes = [code for code, _ in book.pending]
    assert codes == ["PIECE_MISMATCH"] * BAD_PIECES_PER_SOURCE + ["SOURCE_DROPPED"]
    seen: list[str] = []
    book.notice = lambda code, message: seen.append(code)
    book.flush()
    assert seen == codes and not book.pending


def test_a_record_s_verified_pieces_are_adopted_only_for_the_same_file(tmp_path: Path) -> None:
    data = os.urandom(4 * PIECE)
    record = PartRecord(url="http://old-mirror/x", expected_size=len(data), sha256=sha(data),
                        piece_size=PIECE, verified=[(0, 3)])  # fmt: skip
    book = book_for(tmp_path, data)
    book.adopt(record)
    assert book.verified == {0, 1, 2}  # whatever URL the record names
    for other in (
        {"sha256": "0" * 64}, {"piece_size": 2 * PIECE}, {"expected_size": len(data) + 1}
    ):  # fmt: skip
        fresh = book_for(tmp_path, data)
        fresh.adopt(record.replace(**other))
        assert fresh.verified == set()
    book.forget_from(PIECE * 2)
    assert book.verified == {0, 1}
