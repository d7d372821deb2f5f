"""A TCP proxy on loopback in front of the object store: what a CDN or a slow line
does to signed URLs. It forwards bytes unchanged (so SigV4 signatures made for its
address verify upstream), records each request head the client sent, and can slow
replies down, cut connections after some bytes, or hold new requests back."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field

REQUEST_HEAD = re.compile(rb"(GET|HEAD|PUT|POST) (\S+) HTTP/1\.[01]\r\n(.*?)\r\n\r\n", re.S)


@dataclass
class SeenRequest:
    method: str
    target: str
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.requests: list[SeenRequest] = []
        self.bytes_down = 0
        self.rate: float | None = None  # bytes per second, all connections together
        self.cut_after: int | None = None  # close each connection after this many bytes
        self.hold_requests = 0  # how many next requests wait ``hold_seconds`` first
        self.hold_seconds = 0.0
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        self._next_send = time.monotonic()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        with self.lock:
            self.sockets += [client, upstream]
        threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()
        self._up(client, upstream)

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                pending += data
                while match := REQUEST_HEAD.search(pending):
                    self._saw(match)
                    pending = pending[match.end() :]
                if len(pending) > 1 << 16:
                    pending = pending[-(1 << 12) :]  # a PUT body: keep only a tail
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _saw(self, match: re.Match[bytes]) -> None:
        lines = match.group(3).decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        seen = SeenRequest(match.group(1).decode(), match.group(2).decode("latin-1"), headers)
        with self.lock:
            self.requests.append(seen)
            hold = self.hold_requests > 0 and seen.method == "GET"
            if hold:
                self.hold_requests -= 1
        if hold:
            self.closed.wait(self.hold_seconds)

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if self.cut_after is not None and sent + len(data) > self.cut_after:
                    client.sendall(data[: max(0, self.cut_after - sent)])
                    self.bytes_down += max(0, self.cut_after - sent)
                    break
                self._pace(len(data))
                client.sendall(data)
                sent += len(data)
                self.bytes_down += len(data)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _pace(self, size: int) -> None:
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            self._next_send = max(self._next_send, now) + size / self.rate
            wait = self._next_send - now - size / self.rate
        if wait > 0:
            self.closed.wait(wait)

    def stop(self) -> None:
        self.closed.set()
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.close()
