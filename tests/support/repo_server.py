"""A real HTTP repository on loopback for tests: serves the catalog and files with
Range/If-Range/ETag like a static server, counts every byte it sends, and can be
slowed down or made to misbehave per request."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class StoredVersion:
    version: str
    files: dict[str, bytes]
    requires: list[dict[str, str]] = field(default_factory=list)
    manifest_overrides: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        checksum_file = "".join(
            f"{sha256(data)}  {path}\n" for path, data in sorted(self.files.items())
        ).encode()
        body: dict[str, Any] = {
            "version": self.version,
            "size_bytes": sum(len(d) for d in self.files.values()),
            "updated_at": "2026-11-01T00:00:00Z",
            "checksum_sha256": sha256(checksum_file),
            "files": [
                {"path": path, "size_bytes": len(data), "sha256": sha256(data)}
                for path, data in sorted(self.files.items())
            ],
            "requires": self.requires,
            "extra": {},
        }
        body.update(self.manifest_overrides)
        return body


@dataclass
class StoredModel:
    id: str
    versions: dict[str, StoredVersion] = field(default_factory=dict)
    default_version: str | None = None

    def entry(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.id.replace("-", " ").title(),
            "task": "asr",
            "languages": ["zh", "en"],
            "default_version": self.default_version,
            "versions": [v.manifest() for v in self.versions.values()],
        }


# A fault hook sees (handler, path, range_start) and returns True if it answered itself.
Fault = Callable[["RepoHandler", str, int | None], bool]


class RepoServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.models: dict[str, StoredModel] = {}
        self.bytes_sent: Counter[str] = Counter()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.bytes_per_second: float | None = None  # per connection
        self.in_flight = 0  # file bodies being sent right now
        self.max_in_flight = 0
        self.fault: Fault | None = None
        self.raw_entries: dict[str, Any] = {}  # id → hostile manifest served verbatim
        self.request_times: list[float] = []  # time.monotonic() of each entry in requests
        self.lock = threading.Lock()
        self.httpd = self._listen(0)
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.is_down = False

    def _listen(self, port: int) -> ThreadingHTTPServer:
        httpd = ThreadingHTTPServer((self.host, port), RepoHandler)
        httpd.daemon_threads = True
        httpd.repo = self  # type: ignore[attr-defined]
        return httpd

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> RepoServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        if not self.is_down:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.is_down = True

    def go_down(self) -> None:
        """Stop listening: new connections are refused (answers in flight go on)."""
        self.stop()

    def come_up(self) -> None:
        """Listen again on the same address and port."""
        if self.is_down:
            self.httpd = self._listen(self.port)
            self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
            self.thread.start()
            self.is_down = False

    def file_data(self, path: str) -> bytes | None:
        """The bytes a /storage/models/<id>/<version>/<file> path serves, if any."""
        match = re.fullmatch(r"/storage/models/([^/]+)/([^/]+)/(.+)", path)
        model = self.models.get(match.group(1)) if match else None
        stored = model.versions.get(match.group(2)) if model and match else None
        return stored.files.get(match.group(3)) if stored and match else None

    def add(
        self,
        model_id: str,
        version: str,
        files: dict[str, bytes],
        requires: list[dict[str, str]] | None = None,
        default: bool = True,
    ) -> StoredVersion:
        model = self.models.setdefault(model_id, StoredModel(model_id))
        stored = StoredVersion(version, dict(files), requires or [])
        model.versions[version] = stored
        if default or model.default_version is None:
            model.default_version = version
        return stored

    def file_requests(self, model_id: str | None = None) -> list[tuple[str, str, dict[str, str]]]:
        prefix = "/storage/models/" + (f"{model_id}/" if model_id else "")
        return [r for r in self.requests if r[1].startswith(prefix)]

    def storage_bytes(self, model_id: str | None = None) -> int:
        prefix = "/storage/models/" + (f"{model_id}/" if model_id else "")
        return sum(n for path, n in self.bytes_sent.items() if path.startswith(prefix))


class RepoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def repo(self) -> RepoServer:
        return self.server.repo  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        path = unquote(urlsplit(self.path).path)
        with self.repo.lock:
            self.repo.requests.append(("HEAD" if head else "GET", path, dict(self.headers)))
            self.repo.request_times.append(time.monotonic())
        range_start = _range_start(self.headers.get("Range"))
        if self.repo.fault and self.repo.fault(self, path, range_start):
            return
        if path == "/api/models":
            entries = [m.entry() for m in self.repo.models.values()]
            entries += list(self.repo.raw_entries.values())
            return self.send_json(entries)
        if match := re.fullmatch(r"/api/models/([^/]+)", path):
            model_id = match.group(1)
            if model_id in self.repo.raw_entries:
                return self.send_json(self.repo.raw_entries[model_id])
            model = self.repo.models.get(model_id)
            return self.send_json(model.entry()) if model else self.send_json({"error": "no"}, 404)
        if match := re.fullmatch(r"/storage/models/([^/]+)/([^/]+)/(.+)", path):
            model = self.repo.models.get(match.group(1))
            stored = model.versions.get(match.group(2)) if model else None
            data = stored.files.get(match.group(3)) if stored else None
            if data is None:
                return self.send_json({"error": "not found"}, 404)
            return self.send_file(path, data, head)
        self.send_json({"error": "not found"}, 404)

    def send_json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_file(self, path: str, data: bytes, head: bool = False) -> None:
        etag = f'"{sha256(data)[:16]}"'
        start = _range_start(self.headers.get("Range"))
        end = _range_end(self.headers.get("Range"), len(data))
        if_range = self.headers.get("If-Range")
        if start is not None and if_range is not None and if_range != etag:
            start = None  # the file changed: send it whole
        if start is not None and start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = data[start:end] if start is not None else data
        self.send_response(206 if start is not None else 200)
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not head:
            self.write_body(path, body)

    def write_body(self, path: str, body: bytes) -> None:
        rate = self.repo.bytes_per_second
        step = 64 * 1024 if rate is None else max(1024, int(rate / 20))
        with self.repo.lock:
            self.repo.in_flight += 1
            self.repo.max_in_flight = max(self.repo.max_in_flight, self.repo.in_flight)
        try:
            for offset in range(0, len(body), step):
                chunk = body[offset : offset + step]
                self.wfile.write(chunk)
                with self.repo.lock:
                    self.repo.bytes_sent[path] += len(chunk)
                if rate is not None:
                    time.sleep(len(chunk) / rate)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self.repo.lock:
                self.repo.in_flight -= 1


def _range_start(header: str | None) -> int | None:
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", header or "")
    return int(match.group(1)) if match else None


def _range_end(header: str | None, size: int) -> int:
    """Exclusive end of a ``bytes=a-b`` range (``bytes=a-`` runs to the end)."""
    match = re.fullmatch(r"bytes=(\d+)-(\d+)", header or "")
    return min(size, int(match.group(2)) + 1) if match else size
