"""Generate ``schemas/`` (JSON Schema) from the wire models; ``--check`` fails on drift.

python -m sidecar.schemas [--check] [DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from sidecar import errors, wire, wire_files, wire_home, wire_store
from sidecar.manifest import CatalogModel
from sidecar.transfer.record import PartRecord

METHODS: dict[str, tuple[type[BaseModel], type[BaseModel] | None]] = {
    "getInfo": (wire.NoParams, wire.InfoResult),
    "getModelPath": (wire.GetModelPathParams, wire.ModelPathResult),
    "install": (wire.InstallParams, wire.InstallResult),
    "listModels": (wire.ListModelsParams, wire.ListModelsResult),
    "getTask": (wire.TaskIdParams, wire.Task),
    "listTasks": (wire.NoParams, wire.ListTasksResult),
    "pause": (wire.TaskIdParams, wire.Task),
    "resume": (wire.TaskIdParams, wire.Task),
    "cancel": (wire.TaskIdParams, wire.Task),
    "remove": (wire.ModelRefParams, wire.RemoveResult),
    "verify": (wire.ModelRefParams, wire.VerifyResult),
    "ranking": (wire.RankingParams, wire.RankingResult),
    "installUrl": (wire.InstallUrlParams, wire.InstallResult),
    "setLimits": (wire.SetLimitsParams, wire.LimitsResult),
    "setNetwork": (wire.SetNetworkParams, wire.NetworkResult),
    "shutdown": (wire.NoParams, wire.ShutdownResult),
    "diskUsage": (wire_store.DiskUsageParams, wire_store.DiskUsageResult),
    "prune": (wire_store.PruneParams, wire_store.PruneResult),
    "pin": (wire_store.PinParams, wire_store.PinResult),
    "unpin": (wire_store.PinParams, wire_store.PinResult),
    "releaseModel": (wire_store.ReleaseModelParams, wire_store.ReleaseModelResult),
    "moveStore": (wire_home.MoveStoreParams, wire_home.MoveStoreResult),
    "importModel": (wire_home.ImportModelParams, wire_home.ImportModelResult),
}
NOTIFICATIONS: dict[str, type[BaseModel]] = {
    "task.progress": wire.Task,
    "task.state": wire.Task,
    "models.changed": wire.ModelsChanged,
    "store.moveProgress": wire_home.MoveProgress,
}
DOCUMENTS: dict[str, type[Any]] = {
    "registry": wire_files.RegistryDocument,
    "lock-file": wire_files.LockInfo,
    "part-record": PartRecord,  # a dataclass: the transfer worker runs without pydantic
    "error-data": wire.ErrorData,
}


def _schema(model: type[Any], title: str, by_alias: bool = True) -> dict[str, Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    schema = adapter.json_schema(by_alias=by_alias, mode="serialization")
    schema["title"] = title
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def render() -> dict[str, str]:
    """File name → content, for every schema."""
    files: dict[str, Any] = {}
    for name, (params, result) in METHODS.items():
        files[f"methods/{name}.params.json"] = _schema(params, f"{name} params")
        if result is not None:
            files[f"methods/{name}.result.json"] = _schema(result, f"{name} result")
    for name, model in NOTIFICATIONS.items():
        files[f"notifications/{name}.json"] = _schema(model, f"{name} notification")
    for name, model in DOCUMENTS.items():
        files[f"files/{name}.json"] = _schema(model, name)
    files["repository/model.json"] = _schema(CatalogModel, "repository catalog entry", False)
    files["errors.json"] = {
        "title": "error codes",
        "codes": {error.name: error.code for error in errors.ALL_ERRORS},
    }
    return {path: json.dumps(body, indent=2, sort_keys=True) + "\n" for path, body in files.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    rest = [a for a in argv if a != "--check"]
    root = Path(rest[0]) if rest else Path("schemas")
    expected = render()
    present = {str(p.relative_to(root)) for p in root.rglob("*.json")} if root.exists() else set()
    stale = sorted(
        path
        for path, body in expected.items()
        if not (root / path).exists() or (root / path).read_text() != body
    )
    extra = sorted(present - set(expected))
    if check:
        if stale or extra:
            sys.stderr.write(
                "schemas/ is out of date; run `make schemas`.\n"
                + "".join(f"  changed: {p}\n" for p in stale)
                + "".join(f"  not generated: {p}\n" for p in extra)
            )
            return 1
        return 0
    for path in extra:
        (root / path).unlink()
    for path, body in expected.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
