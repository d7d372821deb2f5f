"""The store's methods: diskUsage, prune, pin, unpin, releaseModel, and what
getModelPath adds (last used, leases). ``client`` names the connection the methods
answer: leases taken through it end when it closes (``Leases.drop_client``)."""

from __future__ import annotations

from typing import Any

from sidecar.core.leases import STDIO
from sidecar.core.manager import Manager
from sidecar.rpc.methods import Handler, handler
from sidecar.wire import GetModelPathParams, WireModel
from sidecar.wire_store import (
    DiskUsageParams,
    PinParams,
    PruneParams,
    ReleaseModelParams,
    ReleaseModelResult,
)


def model_path_answer(manager: Manager, p: GetModelPathParams, client: str) -> dict[str, Any]:
    """getModelPath on the event loop: memory only (a dict write for the last-used time,
    saved in batches by ``LastUsed.serve``)."""
    answer = manager.library.model_path(p.model_id, p.version)
    keeper = manager.keeper
    keeper.last_used.touch(answer["modelId"], answer["version"])
    if p.lease:
        lease_id = keeper.leases.grant(client, answer["modelId"], answer["version"])
        return {**answer, "leaseId": lease_id}
    return answer


def build_store_methods(manager: Manager, client: str = STDIO) -> dict[str, Handler]:
    keeper = manager.keeper

    @handler(DiskUsageParams)
    async def disk_usage(_: DiskUsageParams) -> WireModel:
        return await keeper.disk_usage()

    @handler(PruneParams)
    async def prune_store(p: PruneParams) -> WireModel:
        from sidecar.core.prune import prune  # loaded by then: Manager.complete

        return await prune(keeper, p.dry_run, p.older_than_days)

    @handler(PinParams)
    async def pin(p: PinParams) -> WireModel:
        return await keeper.pin(p.model_id, p.version, True)

    @handler(PinParams)
    async def unpin(p: PinParams) -> WireModel:
        return await keeper.pin(p.model_id, p.version, False)

    @handler(ReleaseModelParams)
    async def release_model(p: ReleaseModelParams) -> WireModel:
        lease = keeper.leases.release(p.lease_id)
        return ReleaseModelResult(
            released=lease is not None,
            model_id=lease.model_id if lease else None,
            version=lease.version if lease else None,
        )

    return {
        "diskUsage": disk_usage,
        "prune": prune_store,
        "pin": pin,
        "unpin": unpin,
        "releaseModel": release_model,
    }
