"""Piece hashes over real nginx mirrors: a download killed half-way resumes from another
mirror, or a new signed URL, keeping every verified piece; a mirror that serves one
wrong piece costs that piece alone, fetched again from the other mirror. Bytes are
counted in nginx's access log ($body_bytes_sent)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.faults import Redirect
from tests.support.repo_helpers import Nginx, nginx_binary, publish_files
from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import Sidecar

NGINX = nginx_binary()
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run does)"
)

PIECE = 256 * 1024
SMALL = 4 * 1024 * 1024 + 12_345  # one stream; the last piece is short
LARGE = 40 * 1024 * 1024  # several ranged connections (32 MiB and up)
FILE_PATH = "/storage/models/big/1.0.0/model.bin"
LOG_LINE = re.compile(r'^GET (\S+) HTTP/[\d.]+ (\d+) (\d+) .* range="([^"]*)"$')


def served(nginx: Nginx, start_line: int = 0) -> list[tuple[int, int, str]]:
    """(status, body bytes, Range header) of each model.bin request in nginx's log."""
    replies = []
    for line in nginx.access_log()[start_line:]:
        match = LOG_LINE.match(line)
        if match and match.group(1).split("?")[0] == FILE_PATH:
            replies.append((int(match.group(2)), int(match.group(3)), match.group(4)))
    return replies


def record_of(home: Path) -> dict:
    for path in (home / "temp").glob("*.part.json"):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):  # caught mid-replace
            return {}
    return {}


def verified_bytes(record: dict, size: int) -> int:
    piece = record.get("pieceSize") or record.get("piece_size") or PIECE
    return sum(
        min(size, end * piece) - first * piece for first, end in record.get("verified") or []
    )


@pytest.fixture
def start_nginx(tmp_path: Path) -> Iterator[Callable[[Path], Nginx]]:
    servers: list[Nginx] = []

    def start(storage: Path) -> Nginx:
        assert NGINX is not None
        server = Nginx(NGINX, storage, tmp_path / f"nginx-{len(servers)}").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sidecars() -> Iterator[list[Sidecar]]:
    started: list[Sidecar] = []
    yield started
    for process in started:
        process.cleanup()


def publish_big(tmp_path: Path, size: int, piece_size: int | None = PIECE) -> tuple[Path, bytes]:
    data = os.urandom(size)
    storage = tmp_path / "storage"
    publish_files(storage, "big", "1.0.0", {"model.bin": data}, piece_size=piece_size)
    return storage, data


def kill_half_way(
    sidecars: list[Sidecar], home: Path, repository: str, size: int, rate: int
) -> tuple[str, dict]:
    """Start an install capped at ``rate``, kill -9 once half the file is on record."""
    first = Sidecar(home, [repository], args=["--max-bytes-per-second", str(rate)]).start()
    sidecars.append(first)
    task_id = first.call("install", {"modelId": "big"})["taskId"]
    first.wait_for(lambda: verified_bytes(record_of(home), size) >= size // 2, timeout=60)
    first.kill()
    return task_id, record_of(home)


def resume(sidecars: list[Sidecar], home: Path, repository: str, task_id: str) -> dict:
    second = Sidecar(home, [repository]).start()
    sidecars.append(second)
    return second.wait_task(task_id, {"ready", "failed"}, timeout=60)


def installed(home: Path) -> bytes:
    return (home / "models" / "big" / "1.0.0" / "model.bin").read_bytes()


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["one-stream", "segmented"])
def test_kill_9_then_another_mirror_keeps_every_verified_piece(
    tmp_path: Path, start_nginx, sidecars, size: int
):
    storage, data = publish_big(tmp_path, size, PIECE if size == SMALL else 1024 * 1024)
    first_mirror, second_mirror = start_nginx(storage), start_nginx(storage)
    home = tmp_path / "home"
    rate = 1_000_000 if size == SMALL else 10_000_000
    task_id, record = kill_half_way(sidecars, home, first_mirror.url, size, rate)
    kept = verified_bytes(record, size)
    assert size // 2 <= kept < size, record

    task = resume(sidecars, home, second_mirror.url, task_id)
    assert task["state"] == "ready", task
    assert installed(home) == data
    piece = record.get("pieceSize") or record.get("piece_size")
    after = sum(sent for _, sent, _ in served(second_mirror))
    assert after <= size - kept + piece, (after, size, kept)


def test_a_new_signed_url_after_a_kill_keeps_every_verified_piece(
    tmp_path: Path, start_nginx, sidecars
):
    """The repository answers each GET with a 302 to a signed URL on nginx; after the
    kill the app comes back through another repository URL, and the signature differs."""
    storage, data = publish_big(tmp_path, SMALL)
    nginx = start_nginx(storage)
    redirectors = []
    for signature in ("first", "second"):
        redirector = RepoServer().start()
        redirector.fault = Redirect(
            lambda path, s=signature: f"{nginx.url}{path}?signature={s}&expires=60",
            times=None,
            match=lambda path: True,
        )
        redirectors.append(redirector)
    try:
        home = tmp_path / "home"
        task_id, record = kill_half_way(sidecars, home, redirectors[0].url, SMALL, 1_000_000)
        kept = verified_bytes(record, SMALL)
        assert SMALL // 2 <= kept < SMALL
        lines_at_kill = len(nginx.access_log())

        task = resume(sidecars, home, redirectors[1].url, task_id)
        assert task["state"] == "ready", task
        assert installed(home) == data
        signed = [line for line in nginx.access_log()[lines_at_kill:] if "model.bin" in line]
        assert signed and all("signature=second" in line for line in signed)
        after = sum(sent for _, sent, _ in served(nginx, lines_at_kill))
        assert after <= SMALL - kept + PIECE, (after, SMALL, kept)
    finally:
        for redirector in redirectors:
            redirector.stop()


def corrupt(storage: Path, copy: Path, pieces: list[int], piece: int = PIECE) -> Path:
    """A mirror's copy of the tree with wrong bytes in ``pieces`` of model.bin (same
    size: nginx serves it with the usual status, length and ranges)."""
    shutil.copytree(storage, copy)
    path = copy / "models" / "big" / "1.0.0" / "model.bin"
    with open(path, "r+b") as handle:
        for index in pieces:
            handle.seek(index * piece + 1000)
            original = handle.read(100)
            handle.seek(index * piece + 1000)
            handle.write(bytes(b ^ 0x5A for b in original))
    return copy


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["one-stream", "segmented"])
def test_a_mirror_with_one_wrong_piece_costs_that_piece_alone(
    tmp_path: Path, start_nginx, sidecars, size: int
):
    piece = PIECE if size == SMALL else 1024 * 1024
    storage, data = publish_big(tmp_path, size, piece)
    bad = start_nginx(corrupt(storage, tmp_path / "bad-copy", [5], piece))
    good = start_nginx(storage)
    sidecar = Sidecar(tmp_path / "home", [bad.url, good.url]).start()
    sidecars.append(sidecar)
    task = sidecar.install_and_wait("big")
    assert task["state"] == "ready", task
    assert installed(tmp_path / "home") == data

    # The bad mirror sent the file once (ranged connections may have had a tail cut
    # short); the good one sent exactly piece 5, once.
    from_bad = sum(sent for _, sent, _ in served(bad))
    assert from_bad == size if size == SMALL else size <= from_bad < size + 8 * piece
    assert served(good) == [(206, piece, f"bytes={5 * piece}-{6 * piece - 1}")]
    codes = [entry["code"] for entry in task["history"]]
    assert codes == ["PIECE_MISMATCH"], task["history"]
    message = task["history"][0]["message"]
    assert "big@1.0.0 model.bin" in message and f"bytes {5 * piece}-" in message
    assert "did not match the manifest's hash" in sidecar.stderr()


def test_a_mirror_with_many_wrong_pieces_is_dropped(tmp_path: Path, start_nginx, sidecars):
    storage, data = publish_big(tmp_path, SMALL)
    bad = start_nginx(corrupt(storage, tmp_path / "bad-copy", [1, 2, 3, 4, 9]))
    good = start_nginx(storage)
    sidecar = Sidecar(tmp_path / "home", [bad.url, good.url]).start()
    sidecars.append(sidecar)
    task = sidecar.install_and_wait("big")
    assert task["state"] == "ready", task
    assert installed(tmp_path / "home") == data
    codes = [entry["code"] for entry in task["history"]]
    assert codes == ["PIECE_MISMATCH"] * 3 + ["SOURCE_DROPPED"], task["history"]
    # Dropped after its third bad piece (4 was cut mid-way: bad too, from its head on
    # disk); piece 0, verified from the bad mirror, never came again; 1-3 came alone.
    replies = served(good)
    assert sum(sent for _, sent, _ in replies) < SMALL, replies
    starts = [int(r.split("=")[1].split("-")[0]) for _, _, r in replies]
    assert min(starts) >= PIECE
    for index in (1, 2, 3):
        assert (206, PIECE, f"bytes={index * PIECE}-{(index + 1) * PIECE - 1}") in replies
    assert not any(str(9 * PIECE) in r for _, _, r in served(bad))


@pytest.mark.parametrize("same_validator", [True, False], ids=["same-etag", "other-etag"])
def test_without_piece_hashes_a_mirror_resumes_only_on_the_same_validator(
    tmp_path: Path, start_nginx, sidecars, same_validator: bool
):
    storage, data = publish_big(tmp_path, SMALL, piece_size=None)
    first_mirror = start_nginx(storage)
    other = storage
    if not same_validator:  # the same bytes, another modification time: another ETag
        other = tmp_path / "copy"
        shutil.copytree(storage, other)
        os.utime(other / "models" / "big" / "1.0.0" / "model.bin", (1_000_000, 1_000_000))
    second_mirror = start_nginx(other)
    home = tmp_path / "home"
    first = Sidecar(home, [first_mirror.url], args=["--max-bytes-per-second", "1000000"]).start()
    sidecars.append(first)
    task_id = first.call("install", {"modelId": "big"})["taskId"]
    part = home / "temp"
    first.wait_for(
        lambda: sum(p.stat().st_size for p in part.glob("*.part")) >= SMALL // 2, timeout=60
    )
    first.kill()
    on_disk = sum(p.stat().st_size for p in part.glob("*.part"))

    task = resume(sidecars, home, second_mirror.url, task_id)
    assert task["state"] == "ready", task
    assert installed(home) == data
    replies = served(second_mirror)
    after = sum(sent for _, sent, _ in replies)
    if same_validator:
        assert after == SMALL - on_disk, (after, on_disk)
        assert replies[0][0] == 206
    else:
        assert after == SMALL and replies[-1][0] == 200
