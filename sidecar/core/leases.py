"""Leases: a version handed out with ``getModelPath {lease: true}`` is in use (never
evicted nor pruned) until ``releaseModel`` or until the client that took it goes away.
A client is a connection: the stdio pipe is ``STDIO``; a local-socket attach gives
each of its connections an id of its own and calls ``drop_client`` when it closes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

STDIO = "stdio"


@dataclass(frozen=True)
class Lease:
    lease_id: str
    client: str
    model_id: str
    version: str


class Leases:
    def __init__(self) -> None:
        self._by_id: dict[str, Lease] = {}

    def grant(self, client: str, model_id: str, version: str) -> str:
        lease = Lease(uuid.uuid4().hex, client, model_id, version)
        self._by_id[lease.lease_id] = lease
        return lease.lease_id

    def release(self, lease_id: str) -> Lease | None:
        return self._by_id.pop(lease_id, None)

    def drop_client(self, client: str) -> list[Lease]:
        gone = [lease for lease in self._by_id.values() if lease.client == client]
        for lease in gone:
            del self._by_id[lease.lease_id]
        return gone

    def in_use(self) -> set[tuple[str, str]]:
        return {(lease.model_id, lease.version) for lease in self._by_id.values()}
