"""Ranged GETs whose body goes from the socket to the part with no Python per byte.

httpx hands a body over as fresh ``bytes`` through anyio, h11 and its iterators. At a
loopback line's full speed that per-chunk work, not the copying, took about one CPU
second per GiB on the event loop, on a machine whose other core hashes. Once a
ranged reply has shown that the server answers ranges itself (no redirect), the
other segments come through here: the standard library's ``http.client`` in a worker
thread, ``readinto`` one reusable buffer (straight from the socket for reads this
large), then ``pwrite`` at the offset. Both release the GIL; the event loop hears
about each megabyte, not each packet.

Blocking: everything but ``abort`` runs in a worker thread. Errors leave as the
``sidecar.http`` ones, translated here as ``map_transport_errors`` does for httpx.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from sidecar.http import ConnectionFailed, TransientError

CONNECT_TIMEOUT = 10.0  # as the httpx client's


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=False)  # the same trust as the httpx client


class RangeConnection:
    """One keep-alive connection to the file's origin, reused unit after unit."""

    def __init__(self, url: httpx.URL, stall_timeout: float | None, buffer_size: int) -> None:
        self.url = url
        self.stall_timeout = stall_timeout
        self.buffer = memoryview(bytearray(buffer_size))  # bodies land here, unit after unit
        self.aborted = False
        self._connection: http.client.HTTPConnection | None = None

    def get(self, headers: dict[str, str]) -> http.client.HTTPResponse:
        """Send a GET and read the reply's head; the body is left on the socket."""
        if self.aborted:
            raise TransientError("aborted")
        reused = self._connection is not None
        try:
            return self._request(headers)
        except TransientError as exc:
            closed = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
            if not reused or self.aborted or not isinstance(exc.__cause__, closed):
                raise
            return self._request(headers)  # the server closed it while idle: once, afresh

    def _request(self, headers: dict[str, str]) -> http.client.HTTPResponse:
        if self._connection is None:
            self._connection = self._connect()
        target = self.url.raw_path.decode("ascii")
        with self.map_errors():
            self._connection.request("GET", target, headers=headers)
            return self._connection.getresponse()

    def readinto(self, response: http.client.HTTPResponse, view: memoryview) -> int:
        if self.aborted:
            raise TransientError("aborted")
        with self.map_errors():
            count = response.readinto(view)
        if count == 0 and len(view):
            self.close()
            raise TransientError("the reply ended early")
        return count

    def abort(self) -> None:
        """Wake a read blocked in another thread (from the event loop: never blocks)."""
        self.aborted = True
        connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Drop the connection (after an error, or with a body left unread)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _connect(self) -> http.client.HTTPConnection:
        host = self.url.host
        port = self.url.port
        connection: http.client.HTTPConnection
        if self.url.scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=CONNECT_TIMEOUT, context=_ssl_context()
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise ConnectionFailed(f"cannot connect: {exc}") from exc
        assert connection.sock is not None
        connection.sock.settimeout(self.stall_timeout)
        return connection

    @contextmanager
    def map_errors(self) -> Iterator[None]:
        try:
            yield
        except TimeoutError as exc:
            self.close()
            raise TransientError("stalled: ReadTimeout") from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            if self.aborted:
                raise TransientError("aborted") from exc
            raise TransientError(f"transfer failed: {type(exc).__name__}: {exc}") from exc
