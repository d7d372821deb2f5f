"""The one path file bodies take: a GET through urllib3 in a worker thread, its body
read into one reusable buffer and written at an offset, for single streams and
segments alike. urllib3 brings proxies (CONNECT for HTTPS), TLS with the platform's
trust store, and keep-alive pools; its errors become ours in ``map_errors``, once.

Redirects are followed here, so a CDN's signed URL is resolved once and shared by
every connection of the file (``Source``); when the signed URL stops answering
(401/403/410 from the redirected host, an expired signature) it is resolved again from
the repository URL and the request goes on. The bearer token goes to the repository's
origin only, never to a redirected host nor to a proxy in the clear.

Blocking: everything but ``abort`` runs in a worker thread.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import anyio
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from sidecar import __version__
from sidecar.redact import redact_url
from sidecar.transfer.http import (
    ConnectionFailed,
    SourceFailed,
    TlsFailed,
    TransientError,
    tls_failure,
)
from sidecar.transfer.network import Network

T = TypeVar("T")
Reply = urllib3.BaseHTTPResponse
USER_AGENT = f"ModelManager/{__version__}"
BUFFER_SIZE = 256 * 1024  # one per connection: 16 of them stay in the memory budget
MIN_READ = 16 * 1024
READ_WAIT = 0.1  # seconds one read may wait for its bytes
CONNECT_TIMEOUT = 10.0
MAX_REDIRECTS = 10
REDIRECTS = (301, 302, 303, 307, 308)
EXPIRED = (401, 403, 410)  # what a CDN answers for a signed URL past its expiry


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.rsplit("@", 1)[-1].lower()


@dataclass
class Source:
    """One file's location: the repository URL, the headers for its origin, and the
    URL it currently resolves to (shared by the file's connections)."""

    url: str
    origin_headers: dict[str, str] = field(default_factory=dict, repr=False)
    resolved: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, url: str, origin_headers: dict[str, str]) -> Source:
        """Credentials in the URL (``https://user:pw@host/...``) become Basic auth for
        its origin; the URL used, shown and stored carries none."""
        parts = urlsplit(url)
        if parts.username is None:
            return cls(url, origin_headers)
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        bare = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
        basic = urllib3.make_headers(basic_auth=credentials)["authorization"]
        return cls(bare, {"Authorization": basic} | origin_headers)

    def headers_for(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        if origin(url) == origin(self.url):
            return headers | self.origin_headers
        return headers


@dataclass
class SpeedFloor:
    """A reply slower than ``bytes_per_second`` over ``window`` seconds is dropped and
    retried: a server that drips a byte now and then never trips a stall timeout. Off
    while a bandwidth cap is set (the slowness is then ours) or at 0."""

    bytes_per_second: float = 0.0
    window: float = 60.0
    capped: Callable[[], bool] = lambda: False


class BodyConnection:
    """One worker's requests, one after another, on keep-alive connections."""

    def __init__(
        self,
        network: Network,
        source: Source,
        stall_timeout: float,
        floor: SpeedFloor | None = None,
    ) -> None:
        self.network = network
        self.source = source
        self.floor = floor or SpeedFloor()
        self._window_start = 0.0
        self._window_bytes = 0
        self._too_slow: str | None = None
        self._read_size = 4 * MIN_READ
        self._body: Any = None
        self.timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=stall_timeout)
        self.aborted = False
        self.response: urllib3.BaseHTTPResponse | None = None
        self.url = source.url  # the URL the current reply came from
        self.buffer = memoryview(bytearray(BUFFER_SIZE))  # bodies land here, reply after reply

    def get(self, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        """Send a GET and read the reply's head (redirects followed); the body is left
        on the socket for ``readinto``."""
        self.release()
        with self.source.lock:
            url = self.source.resolved or self.source.url
        re_resolved = False
        for _ in range(MAX_REDIRECTS + 1):
            sent = self.source.headers_for(url, {"User-Agent": USER_AGENT} | headers)
            response = self._request(url, sent)
            location = response.headers.get("Location")
            if response.status in REDIRECTS and location:
                self._discard(response)
                url = urljoin(url, location)
                if urlsplit(url).scheme not in ("http", "https"):
                    raise SourceFailed(
                        f"redirected to a location that is not http(s): {redact_url(url)}"
                    )
                continue
            if response.status in EXPIRED and url != self.source.url and not re_resolved:
                self._discard(response)  # a signed URL that expired: ask the repository again
                with self.source.lock:
                    self.source.resolved = None
                url, re_resolved = self.source.url, True
                continue
            with self.source.lock:
                self.source.resolved = url if url != self.source.url else None
            self.response, self.url = response, url
            # The standard library's response under urllib3's: its readinto fills our
            # buffer in place, where urllib3's allocates a fresh bytes object per read
            # and copies it (a page-faulting allocation per 256 KiB: ~40% more time for
            # 1 GiB). We never ask urllib3 to decode, so nothing is skipped.
            body = getattr(response, "_fp", None)
            self._body = body if hasattr(body, "readinto") else response
            self._window_start, self._window_bytes = time.monotonic(), 0
            self._too_slow = None
            return response
        raise SourceFailed(f"too many redirects from {redact_url(self.source.url)}")

    def _request(self, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        if self.aborted:
            raise TransientError("aborted")
        pool = self.network.pool_for(url)
        with self.map_errors(url):
            return pool.urlopen(
                "GET",
                url,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
                timeout=self.timeout,
                assert_same_host=False,
            )

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` from the body; an early end of the body is an error."""
        count = self.read_some(view)
        if count == 0 and len(view):
            self.close()
            raise TransientError("the reply ended early")
        return count

    def read_some(self, view: memoryview) -> int:
        """Read into the start of ``view`` as much as arrives in about ``READ_WAIT`` at
        the reply's pace; 0 at the body's end (a body cut short before its
        Content-Length raises instead). One call fills a large buffer on a fast line (the
        loop is in C, TLS records included); a slow line gets small reads, so its
        progress shows and its speed is judged as its bytes come."""
        assert self.response is not None
        if self.aborted:
            raise TransientError("aborted")
        if self._too_slow is not None:  # said after the bytes before it were kept
            self.close()
            raise TransientError(self._too_slow)
        want = min(len(view), self._read_size)
        started = time.monotonic()
        with self.map_errors(self.url):
            count: int = self._body.readinto(view[:want])
        took = time.monotonic() - started
        pace = count / took if took > 0 else float("inf")
        self._read_size = int(min(len(view), max(MIN_READ, pace * READ_WAIT)))
        self._check_speed(count)
        return count

    def _check_speed(self, count: int) -> None:
        self._window_bytes += count
        elapsed = time.monotonic() - self._window_start
        if elapsed < self.floor.window:
            return
        speed = self._window_bytes / elapsed
        self._window_start, self._window_bytes = time.monotonic(), 0
        if speed < self.floor.bytes_per_second and not self.floor.capped():
            host = urlsplit(self.url).hostname or "the server"
            self._too_slow = (
                f"{host} sent {speed:.0f} bytes/s over {elapsed:.0f} s, below the minimum of "
                f"{self.floor.bytes_per_second:.0f} (--min-speed): retrying"
            )

    def abort(self) -> None:
        """Wake a read blocked in another thread (from the event loop: never blocks)."""
        self.aborted = True
        response = self.response
        connection = getattr(response, "connection", None) if response is not None else None
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def release(self, body_read: bool = False) -> None:
        """Done with the reply: its connection goes back to the pool if the body was
        read to the end, else it is closed (unread bytes would precede the next reply)."""
        response, self.response = self.response, None
        if response is None:
            return
        if body_read and not self.aborted:
            response.release_conn()
        else:
            response.close()

    def close(self) -> None:
        self.release(body_read=False)

    @staticmethod
    def _discard(response: urllib3.BaseHTTPResponse) -> None:
        response.close()

    @contextmanager
    def map_errors(self, url: str) -> Iterator[None]:
        """urllib3's and the socket's errors → ours, in one table."""
        shown = redact_url(url)
        host = urlsplit(url).hostname or shown
        try:
            yield
        except (SSLError, ProxyError) as exc:
            self.close()
            if (tls := tls_failure(host, exc)) is not None:
                raise tls from exc
            if isinstance(exc, SSLError):  # no ssl error behind it: urllib3's words then
                raise TlsFailed(host, str(exc).split("(", 1)[0].strip() or "TLS failed") from exc
            proxy = self.network.proxy_for(url)
            where = urlsplit(proxy).netloc.rsplit("@", 1)[-1] if proxy else "the proxy"
            raise ConnectionFailed(f"cannot go through the proxy {where}: {exc}") from exc
        except (NewConnectionError, ConnectTimeoutError, NameResolutionError) as exc:
            self.close()
            raise ConnectionFailed(f"cannot connect to {host}") from exc
        except (ReadTimeoutError, TimeoutError) as exc:
            self.close()
            raise TransientError(f"stalled: no data from {host}") from exc
        except LocationValueError as exc:
            raise SourceFailed(f"unusable location {shown}") from exc
        except (HTTPError, OSError, http.client.HTTPException) as exc:
            self.close()
            if self.aborted:
                raise TransientError("aborted") from exc
            raise TransientError(f"transfer from {host} failed: {type(exc).__name__}") from exc


async def in_thread(
    connection: BodyConnection,
    function: Callable[..., T],
    *args: object,
    limiter: anyio.CapacityLimiter | None = None,
) -> T:
    """``function(*args)`` in a worker thread; a cancellation shuts the connection's
    socket so a read blocked in that thread returns at once."""
    finished = False
    result: T | None = None
    error: Exception | None = None  # raised outside the group, so unwrapped

    async def abort_when_cancelled() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            if not finished:
                connection.abort()

    async with anyio.create_task_group() as group:
        group.start_soon(abort_when_cancelled)
        try:
            result = await anyio.to_thread.run_sync(function, *args, limiter=limiter)
        except Exception as exc:
            error = exc
        finally:
            finished = True
            group.cancel_scope.cancel()
    if error is not None:
        if connection.aborted:
            await anyio.lowlevel.checkpoint()  # the cancellation is the news, not the read
        raise error
    return result  # type: ignore[return-value]
