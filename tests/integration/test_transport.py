"""The large-read backend is really under httpx: its pool is replaced through a
private attribute, so an httpx upgrade that renamed it would show here."""

from __future__ import annotations

import os

import anyio
import httpx

from sidecar.transport import READ_SIZE, large_read_transport
from tests.support.repo_server import RepoServer

DATA = os.urandom(3 * READ_SIZE + 17)


def test_httpx_reads_through_the_large_read_backend(repo: RepoServer) -> None:
    repo.add("m", "1", {"w.bin": DATA})

    async def fetch() -> tuple[bytes, int]:
        transport, backend = large_read_transport(httpx.Limits(max_connections=4))
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(f"{repo.url}/storage/models/m/1/w.bin")
            return response.content, backend.streams

    body, streams = anyio.run(fetch)
    assert body == DATA
    assert streams == 1
