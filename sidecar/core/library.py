"""The installed models: where they are, whether they are intact, listing, verify
and remove. ``model_path`` answers from memory only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from sidecar.core.listing import merge_models, version_key
from sidecar.errors import InvalidState, ModelNotAvailable
from sidecar.manifest import check_safe_name
from sidecar.store.homefs import map_home_errors
from sidecar.store.locks import OwnedLock
from sidecar.store.placement import remove_version
from sidecar.wire import (
    ListModelsResult,
    ModelPathResult,
    ModelsChanged,
    RemoveResult,
    VerifyResult,
)

if TYPE_CHECKING:  # the catalog's modules load after the first answer (Manager.complete)
    from sidecar.config import Settings
    from sidecar.core.catalog import Catalog
    from sidecar.core.hooks import Notify
    from sidecar.core.tasks import TaskRuntime
    from sidecar.store.layout import HomeLayout
    from sidecar.store.registry import Registry

NOT_INSTALLED = "not_installed"


@dataclass(frozen=True)
class ModelAvailability:
    ready: dict[str, dict[str, Any]]  # version -> the getModelPath result, as on the wire
    newest_ready: str | None  # what a request without a version gets
    reason: str  # why nothing is available, for a request without a version
    reasons: dict[str, str]  # why each known version that is not ready is not available

    def lookup(self, model_id: str, version: str | None) -> dict[str, Any]:
        if version is None:
            if self.newest_ready is not None:
                return self.ready[self.newest_ready]
            raise ModelNotAvailable(model_id, None, self.reason)
        if version in self.ready:
            return self.ready[version]
        raise ModelNotAvailable(model_id, version, self.reasons.get(version, NOT_INSTALLED))


log = logging.getLogger(__name__)


class Library:
    def __init__(
        self,
        settings: Settings,
        layout: HomeLayout,
        registry: Registry,
        catalog: Callable[[], Catalog],  # made when first used
        notify: Notify,
        active: dict[tuple[str, str], TaskRuntime],
        failed: set[tuple[str, str]],
    ) -> None:
        self.settings = settings
        self.layout = layout
        self.registry = registry
        self._catalog = catalog
        self.notify = notify
        self.active = active
        self.failed = failed

    @property
    def catalog(self) -> Catalog:
        return self._catalog()

    def check_sizes(self) -> None:
        """Every installed file present with its size, checked at once at start."""
        for model_id, model in list(self.registry.document.models.items()):
            for version, entry in list(model.versions.items()):
                if entry.state == "damaged":
                    continue  # stays damaged, whatever its sizes, until repaired
                folder = self.layout.model_dir(model_id, version)
                intact = all(
                    _size_on_disk(folder.joinpath(*f.path.split("/"))) == f.size_bytes
                    for f in entry.files
                )
                state = "ready" if intact else "incomplete"
                if state != entry.state:
                    log.warning("%s@%s is %s", model_id, version, state)
                    try:
                        self.registry.set_state(model_id, version, state)
                    except OSError as exc:  # a read-only home: the daemon still answers
                        log.warning("cannot record it: %s", exc)

    def model_path(self, model_id: str, version: str | None) -> dict[str, Any]:
        """The getModelPath result, from memory only: never the network, never a task."""
        return self._model_availability(model_id).lookup(model_id, version)

    def _model_availability(self, model_id: str) -> ModelAvailability:
        active, failed = list(self.active.items()), list(self.failed)
        model = self.registry.document.models.get(model_id)
        installed = model.versions if model else {}
        ready = {
            v: ModelPathResult(
                model_id=model_id, version=v, path=str(self.layout.model_dir(model_id, v))
            ).wire()
            for v, entry in installed.items()
            if entry.state == "ready"
        }
        known = {*installed, *(k[1] for k, _ in active if k[0] == model_id)}
        known.update(k[1] for k in failed if k[0] == model_id)

        def reason(version: str | None) -> str:
            states = [t.state for k, t in active if k[0] == model_id and version in (None, k[1])]
            if states:
                return str(states[0].value)
            if any(k[0] == model_id and version in (None, k[1]) for k in failed):
                return "failed"
            entry_states = {e.state for v, e in installed.items() if version in (None, v)}
            if entry_states:
                return "damaged" if "damaged" in entry_states else "incomplete"
            return NOT_INSTALLED

        return ModelAvailability(
            ready=ready,
            newest_ready=max(ready, key=version_key) if ready else None,
            reason=reason(None),
            reasons={v: reason(v) for v in sorted(known) if v not in ready},
        )

    async def list_models(self, refresh: bool) -> ListModelsResult:
        from sidecar.core.offline import fetched_at_text

        if refresh or not self.catalog.fresh():
            with anyio.move_on_after(self.settings.stall_timeout):
                await self.catalog.refresh(force=refresh)
        models = merge_models(
            self.catalog.models, self.registry.document.models, self.active, self.layout
        )
        return ListModelsResult(
            models=models,
            stale=not self.catalog.fresh(),
            fetched_at=fetched_at_text(self.catalog.fetched_at),
            offline=self.settings.offline,
        )

    def _installed_versions(self, model_id: str, version: str | None) -> list[str]:
        check_safe_name(model_id, "modelId")
        model = self.registry.document.models.get(model_id)
        versions = sorted(model.versions, key=version_key) if model else []
        if version is not None:
            versions = [v for v in versions if v == version]
        if not versions:
            raise ModelNotAvailable(model_id, version, "not_installed")
        return versions

    async def verify(self, model_id: str, version: str | None) -> VerifyResult:
        version = self._installed_versions(model_id, version)[-1]
        entry = self.registry.installed(model_id, version)
        assert entry is not None
        from sidecar.core.maintenance import find_problems

        problems = await anyio.to_thread.run_sync(find_problems, self.layout, model_id, entry)
        state = "damaged" if problems else "ready"
        if state != entry.state:
            await anyio.to_thread.run_sync(self.registry.set_state, model_id, version, state)
            changed = ModelsChanged(model_id=model_id, version=version, state=state)
            await self.notify("models.changed", changed.wire())
        return VerifyResult(ok=not problems, model_id=model_id, version=version, problems=problems)

    async def remove(self, model_id: str, version: str | None) -> RemoveResult:
        removed = []
        for installed in self._installed_versions(model_id, version):
            if (model_id, installed) in self.active:
                raise InvalidState(
                    f"{model_id}@{installed} has a task; cancel it first",
                    modelId=model_id, version=installed,
                )  # fmt: skip
            lock = OwnedLock(
                self.layout.task_lock(model_id, installed), model_id, installed,
                self.settings.lock_timeout_ms,
            )  # fmt: skip
            with map_home_errors():
                acquired = await anyio.to_thread.run_sync(lock.try_acquire)
            if not acquired:
                raise InvalidState(
                    f"{model_id}@{installed} is being installed by another process",
                    modelId=model_id, version=installed,
                )  # fmt: skip
            try:
                # Never through a link planted at models/<id>: the folder it leads to is
                # not ours to delete.
                folder = self.layout.model_dir(model_id, installed)
                await anyio.to_thread.run_sync(self.layout.fs.check, folder)
                with map_home_errors():
                    await anyio.to_thread.run_sync(remove_version, self.layout, model_id, installed)
                    await anyio.to_thread.run_sync(self.registry.forget, model_id, installed)
            finally:
                await anyio.to_thread.run_sync(lock.release)
            removed.append(installed)
            changed = ModelsChanged(model_id=model_id, version=installed, state="removed")
            await self.notify("models.changed", changed.wire())
        return RemoveResult(model_id=model_id, removed=removed)


def _size_on_disk(path: Path) -> int:
    try:
        return int(path.stat().st_size)
    except OSError:
        return -1
