"""The methods that manage the store as a whole: ``moveStore`` (sidecar.store.relocate)
and ``importModel`` (sidecar.core.importer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.core.importer import import_model
from sidecar.core.relocation import move_store
from sidecar.wire import WireModel
from sidecar.wire_store import ImportModelParams, MoveStoreParams

if TYPE_CHECKING:
    from sidecar.core.manager import Manager
    from sidecar.rpc.methods import Handler


def build_store_methods(manager: Manager) -> dict[str, Handler]:
    from sidecar.rpc.methods import handler  # methods.py imports this module

    @handler(ImportModelParams)
    async def import_model_method(p: ImportModelParams) -> WireModel:
        return await import_model(manager, p.model_id, p.version, p.path, p.mode)

    @handler(MoveStoreParams)
    async def move_store_method(p: MoveStoreParams) -> WireModel:
        return await move_store(manager, p.to)

    return {"importModel": import_model_method, "moveStore": move_store_method}
