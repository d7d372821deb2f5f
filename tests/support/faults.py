"""Fault injectors for ``RepoServer``: each is a ``fault`` hook that misbehaves the
way real CDNs, proxies and networks do, a configurable number of times.

    repo.fault = ResetAfter(600_000, times=2)          # the first two file requests
    repo.fault = chain(ResetAfter(1 << 20), IgnoreRange(times=None))  # None: always

Every injector only touches requests it ``matches`` (file downloads by default),
counts the requests it acted on in ``hits``, and adds what it sent for a storage
path to ``repo.bytes_sent`` like the normal handler does, so byte accounting in
tests stays exact. Stalls wait on an event that ``release()`` sets, so a test's
teardown never waits for a sleeping handler.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tests.support.repo_server import RepoHandler, RepoServer, sha256

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>Bad Gateway</h1><p>The proxy server received an invalid response from an "
    b"upstream server. Please try again later or contact your network administrator.</p>"
    b"<hr><address>corporate-proxy/2.4 at gateway.example.internal Port 8080</address>"
    + b"<!-- padding -->" * 24
    + b"</body></html>\n"
)


def etag_of(data: bytes) -> str:
    """The ETag RepoServer sends for ``data``."""
    return f'"{sha256(data)[:16]}"'


class Fault:
    """Acts on the requests it matches, ``times`` times (None: always), after letting
    the first ``skip`` matching requests through untouched."""

    def __init__(
        self,
        *,
        times: int | None = 1,
        skip: int = 0,
        match: str | Callable[[str], bool] = "/storage/",
        ranged: bool | None = None,
        on_hit: Callable[[], None] | None = None,
    ) -> None:
        self.times = times
        self.skip = skip
        self.match = match
        self.ranged = ranged  # True: only ranged requests, False: only whole ones
        self.on_hit = on_hit
        self.seen = 0
        self.hits: list[tuple[float, str, int | None]] = []
        self.released = threading.Event()
        self._lock = threading.Lock()

    def matches(self, path: str, range_start: int | None) -> bool:
        if self.ranged is not None and (range_start is not None) != self.ranged:
            return False
        if callable(self.match):
            return self.match(path)
        return path.startswith(self.match)

    def __call__(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        if not self.matches(path, range_start):
            return False
        with self._lock:
            self.seen += 1
            if self.seen <= self.skip:
                return False
            if self.times is not None and len(self.hits) >= self.times:
                return False
            self.hits.append((time.monotonic(), path, range_start))
        if self.on_hit is not None:
            self.on_hit()
        return self.act(handler, path, range_start)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and len(self.hits) >= self.times

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        """Wake every stalled handler now (teardown)."""
        self.released.set()


class Chain:
    """Several faults on one server: the first that answers a request wins; faults that
    only change state (``ChangeFile``) let the request go on to the next."""

    def __init__(self, faults: Iterable[Fault]) -> None:
        self.faults = list(faults)

    def __call__(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        return any(fault(handler, path, range_start) for fault in self.faults)

    def release(self) -> None:
        for fault in self.faults:
            fault.release()


def chain(*faults: Fault) -> Chain:
    return Chain(faults)


# --- helpers for writing replies ------------------------------------------------------


def _count(handler: RepoHandler, path: str, n: int) -> None:
    with handler.repo.lock:
        handler.repo.bytes_sent[path] += n


def _write(handler: RepoHandler, path: str, body: bytes) -> bool:
    """Write ``body`` (throttled like the server) and count it; False if the client left."""
    rate = handler.repo.bytes_per_second
    step = 64 * 1024 if rate is None else max(1024, int(rate / 20))
    try:
        for offset in range(0, len(body), step):
            chunk = body[offset : offset + step]
            handler.wfile.write(chunk)
            _count(handler, path, len(chunk))
            if rate is not None:
                time.sleep(len(chunk) / rate)
        handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def _headers(
    handler: RepoHandler,
    status: int,
    headers: dict[str, str],
) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()


def _file_reply(
    handler: RepoHandler, path: str, range_start: int | None
) -> tuple[bytes, bytes, int, dict[str, str]] | None:
    """(whole file, body, status, headers) of the honest reply to this request."""
    data = handler.repo.file_data(path)
    if data is None:
        return None
    start = range_start
    if start is not None and handler.headers.get("If-Range") not in (None, etag_of(data)):
        start = None
    if start is not None and start >= len(data):
        return None
    body = data[start:] if start is not None else data
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(len(body)),
        "ETag": etag_of(data),
        "Accept-Ranges": "bytes",
    }
    if start is not None:
        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
    return data, body, 206 if start is not None else 200, headers


def _close(handler: RepoHandler, reset: bool) -> None:
    handler.close_connection = True
    if reset:  # RST instead of FIN when the socket closes
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# --- the faults -----------------------------------------------------------------------


class ResetAfter(Fault):
    """The honest reply's headers, ``n_bytes`` of its body, then a TCP reset.
    The reset waits ``grace`` seconds so the client has read what was sent."""

    def __init__(self, n_bytes: int, *, grace: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_bytes = n_bytes
        self.grace = grace

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        reply = _file_reply(handler, path, range_start)
        if reply is None:
            return False
        _, body, status, headers = reply
        _headers(handler, status, headers)
        _write(handler, path, body[: self.n_bytes])
        self.released.wait(self.grace)
        _close(handler, reset=True)
        return True


class CloseAfterReply(Fault):
    """The whole honest reply, then the connection closes without a "Connection: close"
    header: a server that ends idle keep-alive connections on its own."""

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        data = handler.repo.file_data(path)
        if data is None:
            return False
        handler.send_file(path, data)  # bounded by the Range's end, as the server is
        _close(handler, reset=False)
        return True


class HttpStatus(Fault):
    """An error status (500, 503, 429...) with an optional Retry-After."""

    def __init__(
        self, status: int, *, retry_after: str | float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.status = status
        self.retry_after = retry_after

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        body = json.dumps({"error": f"status {self.status}"}).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        _headers(handler, self.status, headers)
        handler.wfile.write(body)
        return True


class IgnoreRange(Fault):
    """A CDN that ignores Range and If-Range: 200 with the whole body."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("ranged", True)
        super().__init__(**kwargs)

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        reply = _file_reply(handler, path, None)
        if reply is None:
            return False
        _, body, status, headers = reply
        _headers(handler, status, headers)
        _write(handler, path, body)
        return True


class Gzip(Fault):
    """Compresses the reply although the client asked for identity; by default only
    ranged replies (a 206 whose body is gzip of the range)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("ranged", True)
        super().__init__(**kwargs)

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        reply = _file_reply(handler, path, range_start)
        if reply is None:
            return False
        _, body, status, headers = reply
        compressed = gzip.compress(body, compresslevel=1, mtime=0)
        headers["Content-Encoding"] = "gzip"
        headers["Content-Length"] = str(len(compressed))
        _headers(handler, status, headers)
        _write(handler, path, compressed)
        return True


class ShortBody(Fault):
    """Content-Length says the whole reply, ``missing`` bytes fewer arrive, then FIN."""

    def __init__(self, missing: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.missing = missing

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        reply = _file_reply(handler, path, range_start)
        if reply is None:
            return False
        _, body, status, headers = reply
        _headers(handler, status, headers)
        _write(handler, path, body[: max(0, len(body) - self.missing)])
        _close(handler, reset=False)
        return True


class WrongBytes(Fault):
    """The right status and length, wrong content (every byte of the body flipped)."""

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        reply = _file_reply(handler, path, range_start)
        if reply is None:
            return False
        _, body, status, headers = reply
        _headers(handler, status, headers)
        _write(handler, path, bytes(b ^ 0x5A for b in body))
        return True


class HtmlPage(Fault):
    """A proxy's error page with status 200 (``chunked``: without a Content-Length)."""

    def __init__(self, *, chunked: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chunked = chunked

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        page = HTML_ERROR_PAGE
        headers = {"Content-Type": "text/html; charset=utf-8"}
        if self.chunked:
            headers["Transfer-Encoding"] = "chunked"
            _headers(handler, 200, headers)
            _write(handler, path, b"%x\r\n%s\r\n0\r\n\r\n" % (len(page), page))
        else:
            headers["Content-Length"] = str(len(page))
            _headers(handler, 200, headers)
            _write(handler, path, page)
        return True


class Stall(Fault):
    """No byte for ``seconds``: before the status line (``after_bytes`` None), or after
    the headers and ``after_bytes`` bytes of the body. Then the connection closes."""

    def __init__(self, seconds: float, *, after_bytes: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds
        self.after_bytes = after_bytes

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        if self.after_bytes is not None:
            reply = _file_reply(handler, path, range_start)
            if reply is None:
                return False
            _, body, status, headers = reply
            _headers(handler, status, headers)
            _write(handler, path, body[: self.after_bytes])
        self.released.wait(self.seconds)
        _close(handler, reset=False)
        return True


class ChangeFile(Fault):
    """Replaces the file (new bytes, so a new ETag and SHA-256 in the manifest) when it
    is hit, then lets the request be served normally."""

    def __init__(self, repo: RepoServer, path: str, new_data: bytes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.repo = repo
        self.path = path
        self.new_data = new_data

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        parts = self.path.split("/", 2)
        model = self.repo.models[parts[0]]
        model.versions[parts[1]].files[parts[2]] = self.new_data
        return False


class Redirect(Fault):
    """302 to the same path on another server (``to`` is its base URL)."""

    def __init__(self, to: str | Callable[[str], str], *, status: int = 302, **kwargs: Any):
        super().__init__(**kwargs)
        self.to = to
        self.status = status

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        location = self.to(handler.path) if callable(self.to) else self.to + handler.path
        _headers(handler, self.status, {"Location": location, "Content-Length": "0"})
        return True


class Drop(Fault):
    """Accept the connection and reset it without a byte of reply."""

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        _close(handler, reset=True)
        return True


class Outage(Fault):
    """While ``repo.is_down`` (``go_down()``), keep-alive connections opened before the
    outage are reset too, so the network is down for every connection, not just new ones.
    Put it first in a chain."""

    def __init__(self, repo: RepoServer, **kwargs: Any) -> None:
        kwargs.setdefault("times", None)
        kwargs.setdefault("match", "/")
        super().__init__(**kwargs)
        self.repo = repo

    def matches(self, path: str, range_start: int | None) -> bool:
        return self.repo.is_down and super().matches(path, range_start)

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        _close(handler, reset=True)
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (connection refused), at least for a moment."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# --- checks on a home -----------------------------------------------------------------


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` by relative POSIX path."""
    if not root.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def model_dir(home: Path, model_id: str, version: str) -> Path:
    return home / "models" / model_id / version


def assert_installed_exactly(home: Path, model_id: str, version: str, files: dict[str, bytes]):
    folder = model_dir(home, model_id, version)
    found = tree(folder)
    assert sorted(found) == sorted(files), f"files in {folder}: {sorted(found)}"
    for path, data in files.items():
        assert hashlib.sha256(found[path]).hexdigest() == sha256(data), f"wrong bytes in {path}"


def assert_nothing_installed(home: Path, model_id: str) -> None:
    folder = home / "models" / model_id
    leftovers = [p for p in folder.rglob("*")] if folder.exists() else []
    assert not leftovers, f"something is in {folder}: {leftovers}"


def parts_of(home: Path, model_id: str) -> dict[str, Path]:
    """The .part files of a model by their (decoded) file path."""
    from urllib.parse import unquote

    found = {}
    for part in (home / "temp").glob(f"{model_id}@*@*.part"):  # <id>@<version>@<file>.part
        found[unquote(part.name[: -len(".part")].split("@", 2)[2])] = part
    return found


def assert_part_is_prefix(part: Path, data: bytes) -> int:
    """A kept .part holds only a prefix of the real file; returns its size."""
    content = part.read_bytes()
    assert len(content) <= len(data), f"{part.name} is longer than the file"
    assert content == data[: len(content)], f"{part.name} holds bytes that are not the file's"
    return len(content)


def registry_agrees_with_disk(home: Path) -> dict[str, Any]:
    """registry.json parses; every version it lists is a folder whose files have the
    recorded sizes and hashes, and every version folder is listed."""
    registry = json.loads((home / "registry.json").read_text())
    listed = set()
    for model_id, model in registry["models"].items():
        for version, entry in model["versions"].items():
            listed.add((model_id, version))
            folder = model_dir(home, model_id, version)
            assert folder.is_dir(), f"registry lists {model_id}@{version}, no folder"
            if entry["state"] != "ready":
                continue
            for file in entry["files"]:
                path = folder.joinpath(*file["path"].split("/"))
                data = path.read_bytes()
                assert len(data) == file["sizeBytes"], f"{path} has the wrong size"
                assert hashlib.sha256(data).hexdigest() == file["sha256"], f"{path} differs"
    on_disk = {
        (m.name, v.name)
        for m in (home / "models").iterdir()
        if m.is_dir()
        for v in m.iterdir()
        if v.is_dir()
    }
    assert on_disk == listed, f"folders {sorted(on_disk)} vs registry {sorted(listed)}"
    return registry


def outside_writes(home: Path, allowed: Callable[[Path], bool]) -> list[Path]:
    """Files next to the home (under its parent) that are not allowed by the test."""
    return [
        p
        for p in home.parent.rglob("*")
        if p != home and home not in p.parents and not allowed(p) and p.is_file()
    ]


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
