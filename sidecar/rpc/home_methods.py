"""The methods that manage the store as a whole: ``moveStore`` (sidecar.store.relocate)
and ``importModel`` (sidecar.core.importer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jsonrpcserver.result import Result

from sidecar.errors import InvalidState
from sidecar.rpc.methods import Handler, handler, wire_error
from sidecar.wire import WireModel
from sidecar.wire_home import ImportModelParams, MoveStoreParams

if TYPE_CHECKING:
    from sidecar.core.manager import Manager


# Methods that write into the home: refused while it moves (the copy would miss it).
WRITERS_REFUSED_WHILE_MOVING = ("remove", "verify", "importModel")


def with_store_methods(manager: Manager, methods: dict[str, Handler]) -> dict[str, Handler]:
    """``methods`` plus moveStore and importModel, with the home's writers guarded."""
    every = {**methods, **_store_methods(manager)}
    for name in WRITERS_REFUSED_WHILE_MOVING:
        every[name] = _refused_while_moving(manager, every[name])
    return every


def _refused_while_moving(manager: Manager, method: Handler) -> Handler:
    async def guarded(**raw: Any) -> Result:
        if manager.moving:
            raise wire_error(
                InvalidState(
                    "the model home is being moved: try again once moveStore has answered",
                    reason="move_in_progress",
                )
            )
        return await method(**raw)

    guarded.__name__ = method.__name__
    return guarded


def _store_methods(manager: Manager) -> dict[str, Handler]:
    # Imported when called (loaded by then: Manager.complete), not at start-up.
    @handler(ImportModelParams)
    async def import_model_method(p: ImportModelParams) -> WireModel:
        from sidecar.core.importer import import_model

        return await import_model(manager, p.model_id, p.version, p.path, p.mode)

    @handler(MoveStoreParams)
    async def move_store_method(p: MoveStoreParams) -> WireModel:
        from sidecar.core.relocation import move_store

        return await move_store(manager, p.to)

    return {"importModel": import_model_method, "moveStore": move_store_method}
