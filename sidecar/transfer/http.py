"""The HTTP client, and the one boundary where transport errors become ours."""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx

from sidecar import __version__
from sidecar.config import Settings
from sidecar.transfer.network import Network


class TransientError(Exception):
    """A failure worth retrying on the same URL (network, 5xx, 429, bad body)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConnectionFailed(TransientError):
    """Nothing answered at all: the network (or the server) is down."""


class ServerRefused(TransientError):
    """The server answered, but not with the file (5xx, 429, a page of the wrong size):
    worth retrying, and if it lasts, the repository is unavailable, not the network."""


class SourceFailed(Exception):
    """This URL cannot serve the file (404, 403, ...); try the next mirror."""


class TlsFailed(SourceFailed):
    """The host's certificate could not be verified (or TLS failed): another mirror may
    do, retrying this one will not."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"TLS with {host} failed: {reason}")
        self.host = host
        self.reason = reason


def make_client(settings: Settings, network: Network) -> httpx.AsyncClient:
    """The client for the small JSON calls; proxies and trust as ``network`` says."""
    return httpx.AsyncClient(
        transport=RoutingTransport(network),
        timeout=httpx.Timeout(connect=10.0, read=settings.stall_timeout, write=30.0, pool=None),
        follow_redirects=True,  # httpx drops Authorization on a redirect to another origin
        headers={"User-Agent": f"ModelManager/{__version__}"},
        trust_env=False,
    )


def auth_headers(settings: Settings, url: str) -> dict[str, str]:
    """The token goes to the configured repositories only, never to a plain URL."""
    if settings.token and any(url.startswith(base + "/") for base in settings.repositories):
        return {"Authorization": f"Bearer {settings.token}"}
    return {}


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def raise_for_status(response: httpx.Response) -> None:
    check_status(response.status_code, str(response.url), response.headers.get("Retry-After"))


def check_status(status: int, url: str, retry_after: str | None) -> None:
    if status in (408, 425):  # too slow or too early: timing, not the repository
        raise TransientError(f"HTTP {status} from {url}")
    if status == 429 or status >= 500:
        raise ServerRefused(f"HTTP {status} from {url}", retry_after=parse_retry_after(retry_after))
    if status >= 400:
        raise SourceFailed(f"HTTP {status} from {url}")


@contextmanager
def map_transport_errors() -> Iterator[None]:
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        if (tls := _ssl_cause(exc)) is not None:
            host = exc.request.url.host if exc._request is not None else "the server"
            reason = getattr(tls, "verify_message", None) or tls.reason or str(tls)
            raise TlsFailed(host, reason) from exc
        raise ConnectionFailed(f"cannot connect: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise TransientError(f"stalled: {type(exc).__name__}") from exc
    except (httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.InvalidURL) as exc:
        raise SourceFailed(f"unusable location: {type(exc).__name__}: {exc}") from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise TransientError(f"transfer failed: {type(exc).__name__}: {exc}") from exc


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


class RoutingTransport(httpx.AsyncBaseTransport):
    """httpx's side of the same rules: each request goes through the transport of the
    proxy that ``Network.proxy_for`` picks for its URL at that moment."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self._transports: dict[str | None, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        proxy = self.network.proxy_for(str(request.url))
        transport = self._transports.get(proxy)
        if transport is None:
            trust = await anyio.to_thread.run_sync(getattr, self.network, "ssl")  # reads files
            transport = self._transports[proxy] = httpx.AsyncHTTPTransport(
                verify=trust,
                proxy=httpx.Proxy(proxy) if proxy else None,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()
        self._transports.clear()
