"""JSON replies from the repository and the scheduler (catalog, manifests, ranking),
bounded in everything the server controls:

- time: an overall deadline on top of the stall timeout, since a body dripped at one
  byte a second never stalls;
- size: of the body as sent and as decompressed. We ask for ``identity``; a server
  that compresses anyway is inflated at most ``INFLATE_STEP`` at a time and never past
  the bound (a 1 MB gzip body can expand to 1 GiB);
- shape: how many values and how deeply nested. The parser and pydantic recurse, and
  a body of ``[[],[],…]`` costs some fifty times its size in objects.

A refusal is a ``TransientError`` that says what the server did wrong; callers treat it
as any other unusable reply (the next mirror, then REPOSITORY_UNAVAILABLE, or the
cached ranking)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx

from sidecar import __version__
from sidecar.config import Settings
from sidecar.transfer.http import (
    ConnectionFailed,
    SourceFailed,
    TransientError,
    check_status,
    tls_failure,
)
from sidecar.transfer.network import Network

MAX_JSON_DEPTH = 64  # a catalog needs 6 levels; the rest is room for "extra"
MAX_JSON_VALUES = 1_000_000  # ~100k files' worth of entries
INFLATE_STEP = 1 << 20
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS  # zlib detects which header the stream has


class ReplyRefused(TransientError):
    """The server answered with something we do not read."""


async def get_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: dict[str, str],
    max_bytes: int,
    deadline: float,
) -> Any:
    """The parsed reply, or None for a 404."""
    body = bytearray()
    found: bool | None = None
    with anyio.move_on_after(deadline):
        found = await _read(
            client, url, {**headers, "Accept-Encoding": "identity"}, max_bytes, body
        )
    if found is None:
        raise ReplyRefused(f"no complete reply within {deadline:g} s")
    return await anyio.to_thread.run_sync(parse_bounded, body) if found else None


async def _read(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    max_bytes: int,
    body: bytearray,
) -> bool:
    with map_transport_errors():
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 404:
                return False
            raise_for_status(response)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ReplyRefused(f"reply of {declared} bytes; at most {max_bytes} are read")
            inflater = _inflater(response.headers.get("Content-Encoding", ""))
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received > max_bytes:
                    raise ReplyRefused(f"reply larger than {max_bytes} bytes")
                if inflater is None:
                    body += chunk
                else:
                    _inflate(inflater, chunk, body, max_bytes)
            if inflater is not None:
                _finish(inflater, body, max_bytes)
            return True


def _inflater(content_encoding: str) -> Any:
    """None for a plain body, else the decompressor for a gzip or deflate one."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"], ["deflate"]):
        return zlib.decompressobj(_GZIP_OR_ZLIB)
    raise ReplyRefused(f"reply compressed as {content_encoding!r} although identity was asked for")


def _inflate(inflater: Any, data: bytes, body: bytearray, max_bytes: int) -> None:
    try:
        while data:
            if inflater.eof:
                raise ReplyRefused("data after the end of the compressed reply")
            body += inflater.decompress(data, INFLATE_STEP)
            if len(body) > max_bytes:
                raise ReplyRefused(f"reply larger than {max_bytes} bytes once decompressed")
            data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise ReplyRefused(f"damaged compressed reply: {exc}") from exc


def _finish(inflater: Any, body: bytearray, max_bytes: int) -> None:
    """What the decompressor still holds; the stream must be complete."""
    try:
        while not inflater.eof:
            piece = inflater.decompress(b"", INFLATE_STEP)
            if not piece:
                raise ReplyRefused("compressed reply ends early")
            body += piece
            if len(body) > max_bytes:
                raise ReplyRefused(f"reply larger than {max_bytes} bytes once decompressed")
    except zlib.error as exc:
        raise ReplyRefused(f"damaged compressed reply: {exc}") from exc
    if inflater.unused_data:
        raise ReplyRefused("data after the end of the compressed reply")


def parse_bounded(body: bytes | bytearray) -> Any:
    """Parse JSON of a bounded number of values and depth; blocking (run it in a thread)."""
    # An upper bound on the values, at C speed before any object exists: each value
    # after the first follows a comma, a colon or an opening bracket.
    values = 1 + sum(body.count(mark) for mark in (b",", b":", b"[", b"{"))
    if values > MAX_JSON_VALUES:
        raise ReplyRefused(f"reply holds more than {MAX_JSON_VALUES} JSON values")
    try:
        parsed = json.loads(body)
    except RecursionError as exc:
        raise ReplyRefused(f"reply nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:  # UnicodeDecodeError among them
        raise ReplyRefused(f"reply is not JSON: {str(exc)[:200]}") from exc
    if _deeper_than(parsed, MAX_JSON_DEPTH):
        raise ReplyRefused(f"reply nests deeper than {MAX_JSON_DEPTH} levels")
    return parsed


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


# --- the httpx client and its errors -------------------------------------------------


def make_client(settings: Settings, network: Network) -> httpx.AsyncClient:
    """The client for the small JSON calls; proxies and trust as ``network`` says."""
    return httpx.AsyncClient(
        transport=RoutingTransport(network),
        timeout=httpx.Timeout(connect=10.0, read=settings.stall_timeout, write=30.0, pool=None),
        follow_redirects=True,  # httpx drops Authorization on a redirect to another origin
        headers={"User-Agent": f"ModelManager/{__version__}"},
        trust_env=False,
    )


def raise_for_status(response: httpx.Response) -> None:
    check_status(response.status_code, str(response.url), response.headers.get("Retry-After"))


@contextmanager
def map_transport_errors() -> Iterator[None]:
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        host = exc.request.url.host if exc._request is not None else "the server"
        if (tls := tls_failure(host, exc)) is not None:
            raise tls from exc
        raise ConnectionFailed(f"cannot connect: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise TransientError(f"stalled: {type(exc).__name__}") from exc
    except (httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.InvalidURL) as exc:
        raise SourceFailed(f"unusable location: {type(exc).__name__}: {exc}") from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise TransientError(f"transfer failed: {type(exc).__name__}: {exc}") from exc


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
