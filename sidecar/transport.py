"""The HTTP transport under httpx: httpcore's pool with reads of up to 256 KiB.

httpcore asks the socket for 64 KiB at a time, and every read costs the event loop a
trip through anyio, h11 and httpx (timeouts, events, iterators). asyncio already
receives up to 256 KiB per recv; asking for that much takes in one trip what the
socket holds: on loopback at ~1 GB/s this cut the sidecar's CPU by about a tenth and
left the event loop more time to answer the protocol."""

from __future__ import annotations

import ssl
import typing

import httpcore
import httpx

READ_SIZE = 256 * 1024  # asyncio's per-recv maximum (selector transports)


class _LargeReadStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, READ_SIZE), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _LargeReadStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class LargeReads(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.streams = 0  # opened so far: shows the pool really uses this backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.streams += 1
        inner = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _LargeReadStream(inner)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.streams += 1
        inner = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _LargeReadStream(inner)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def large_read_transport(limits: httpx.Limits) -> tuple[httpx.AsyncHTTPTransport, LargeReads]:
    """httpx's own transport (its request mapping and error translation), with its pool
    rebuilt on the large-read backend: httpx has no public option for the backend."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    backend = LargeReads()
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    return transport, backend
