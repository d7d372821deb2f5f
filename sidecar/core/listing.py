"""listModels: the catalog merged with what is on this machine (pure, no I/O)."""

from __future__ import annotations

import re

from sidecar.core.tasks import TaskRuntime
from sidecar.manifest import CatalogModel
from sidecar.store.layout import HomeLayout
from sidecar.wire import InstalledVersionInfo, ModelInfo, ModelState
from sidecar.wire_files import InstalledModel


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: 1.10 > 1.9, and numbers sort before words. Only ASCII digits are
    numbers: "²".isdigit() is true but int("²") fails (a folder named so stopped the daemon)."""
    return tuple(
        (0, int(part)) if part.isascii() and part.isdigit() else (1, part)
        for part in re.split(r"[.\-+_]", version)
    )


def merge_models(
    catalog: dict[str, CatalogModel],
    installed: dict[str, InstalledModel],
    active: dict[tuple[str, str], TaskRuntime],
    layout: HomeLayout,
) -> list[ModelInfo]:
    return [
        _model_info(model_id, catalog.get(model_id), installed.get(model_id), active, layout)
        for model_id in sorted(set(catalog) | set(installed))
    ]


def _model_info(
    model_id: str,
    entry: CatalogModel | None,
    local: InstalledModel | None,
    active: dict[tuple[str, str], TaskRuntime],
    layout: HomeLayout,
) -> ModelInfo:
    versions = local.versions if local else {}
    installed = [
        InstalledVersionInfo(
            version=version,
            state=info.state,
            path=str(layout.model_dir(model_id, version)),
            size_bytes=info.size_bytes,
        )
        for version, info in sorted(versions.items(), key=lambda item: version_key(item[0]))
    ]
    ready = [i.version for i in installed if i.state == "ready"]
    default = entry.default_version if entry else None
    update_available = bool(
        default and ready and version_key(default) > max(version_key(v) for v in ready)
    )
    return ModelInfo(
        id=model_id,
        name=(entry.name if entry else local.name if local else "") or model_id,
        task=(entry.task if entry else local.task if local else ""),
        languages=list(entry.languages) if entry else [],
        default_version=default,
        versions=[v.version for v in entry.versions]
        if entry
        else sorted(versions, key=version_key),
        installed=installed,
        state=_state(model_id, installed, active),
        update_available=update_available,
        in_catalog=entry is not None,
    )


def _state(
    model_id: str, installed: list[InstalledVersionInfo], active: dict[tuple[str, str], TaskRuntime]
) -> ModelState:
    if any(i.state == "ready" for i in installed):
        return "ready"
    running = [t for (m, _), t in active.items() if m == model_id]
    if running:
        state: ModelState = running[0].state.value  # type: ignore[assignment]
        return state
    if installed:
        return "incomplete"
    return "not_installed"
