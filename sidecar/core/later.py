"""What the first answer does not wait for: the modules that only the methods other
than getModelPath use, imported in a thread once it has answered (``Manager.complete``).
Why, and the numbers: docs/decisions.md, "Start-up: what the first answer waits for"."""

from __future__ import annotations

import importlib

THE_REST = (
    "sidecar.core.catalog",
    "sidecar.core.importer",
    "sidecar.core.offline",
    "sidecar.core.prune",
    "sidecar.core.ranking",
    "sidecar.core.relocation",
    "sidecar.core.requirements",
    "sidecar.core.runner",
    "sidecar.core.usage",
    "sidecar.core.wording",
    "sidecar.store.diskspace",
    "psutil",  # for stale locks and the parent's watchdog
)


def import_the_rest() -> None:
    """Blocking: run in a worker thread."""
    from sidecar.rpc.dispatch import complete_package

    complete_package()  # jsonrpcserver's top level, when the daemon set it aside
    for name in THE_REST:
        importlib.import_module(name)


def build_install_models() -> None:
    """Blocking: pydantic builds a model's validator at its first use (``defer_build``,
    for the first answer's sake); the models an install reads and writes are built
    here, while nothing waits, so the first install of a session starts at once."""
    from sidecar import wire, wire_files
    from sidecar.manifest import CatalogModel

    for model in (CatalogModel, wire.InstallParams, wire.InstallResult, wire.Task,
                  wire_files.PersistedTask, wire.ModelsChanged, wire_files.RegistryDocument,
                  wire_files.InstalledVersion):  # fmt: skip
        model.model_rebuild(force=True)
