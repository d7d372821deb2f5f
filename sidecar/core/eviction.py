"""The store as users manage it: what it takes (diskUsage), pins, the quota and its
evictions, and removing a version nobody asked to remove (eviction, prune). Versions
that are pinned, leased (in use by a client) or have a task are never taken."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio

from sidecar.core.lastused import LastUsed
from sidecar.core.leases import Leases
from sidecar.core.listing import version_key
from sidecar.errors import InsufficientDiskSpace, InvalidState, ModelNotAvailable
from sidecar.manifest import CatalogModel, check_safe_name
from sidecar.store.homefs import map_home_errors
from sidecar.store.locks import OwnedLock
from sidecar.store.placement import remove_version
from sidecar.wire import ModelsChanged
from sidecar.wire_files import InstalledVersion, RegistryDocument
from sidecar.wire_store import (
    DiskUsageResult,
    LeftoverUsage,
    PinResult,
    VersionUsage,
)

if TYPE_CHECKING:
    from sidecar.core.manager import Manager
    from sidecar.core.tasks import TaskRuntime
    from sidecar.core.usage import Leftover, VersionFiles
    from sidecar.store.layout import HomeLayout
    from sidecar.store.registry import Registry

log = logging.getLogger(__name__)

Key = tuple[str, str]


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


class StoreKeeper:
    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.layout = manager.layout
        self.registry = manager.registry
        self.last_used = LastUsed(manager.layout)
        self.leases = Leases()
        self.max_store_bytes = manager.settings.max_store_bytes
        self._room = anyio.Lock()  # one quota decision at a time

    def rehome(self, layout: HomeLayout, registry: Registry) -> None:
        """The home moved (moveStore): the same state, kept at the new place."""
        self.layout, self.registry = layout, registry
        self.last_used.rehome(layout)

    # --- who may be taken ------------------------------------------------------------

    def busy_keys(self) -> set[str]:
        """id@version keys (as in temp/ names) of the tasks this process has."""
        return {self.layout.version_key(m, v) for m, v in self.manager.active}

    def why_kept(self, key: Key, entry: InstalledVersion) -> str | None:
        if entry.pinned:
            return "pinned"
        if key in self.leases.in_use():
            return "in use"
        if key in self.manager.active:
            return "has a task"
        return None

    def used_at(self, key: Key, entry: InstalledVersion) -> float:
        """For LRU: the last getModelPath, else when it was installed."""
        used = self.last_used.get(*key)
        if used is not None:
            return used
        try:
            return datetime.fromisoformat(entry.installed_at).timestamp()
        except ValueError:
            return 0.0

    # --- diskUsage -----------------------------------------------------------------

    # sidecar.core.usage is imported where used: the first answer needs only last-used
    # and the leases.

    async def disk_usage(self) -> DiskUsageResult:
        from sidecar.core.usage import VersionFiles, models_bytes, shared_inodes

        busy = self.busy_keys()
        versions, leftovers, free = await anyio.to_thread.run_sync(self.scan, busy)
        document = self.registry.document
        shared = shared_inodes(versions)
        in_use = self.leases.in_use()
        rows: list[VersionUsage] = []
        for model_id, model in sorted(document.models.items()):
            for version, entry in sorted(model.versions.items(), key=lambda v: version_key(v[0])):
                files = versions.get((model_id, version), VersionFiles())
                rows.append(
                    VersionUsage(
                        model_id=model_id,
                        version=version,
                        state=entry.state,
                        size_bytes=files.size,
                        shared_bytes=sum(s for i, (s, _) in files.inodes.items() if i in shared),
                        pinned=entry.pinned,
                        in_use=(model_id, version) in in_use,
                        last_used=iso(self.last_used.get(model_id, version)),
                        installed_at=entry.installed_at,
                    )
                )
        items = []
        for item in leftovers:
            owner, owner_version = item.model_and_version
            items.append(
                LeftoverUsage(
                    kind=item.kind,
                    name=item.path.name,
                    model_id=owner,
                    version=owner_version,
                    size_bytes=item.size,
                    modified_at=iso(item.mtime) or "",
                    busy=item.busy,
                )
            )
        installed = models_bytes(versions)
        leftover = sum(item.size for item in leftovers)
        return DiskUsageResult(
            versions=rows, leftovers=items, models_bytes=installed, leftover_bytes=leftover,
            total_bytes=installed + leftover, free_bytes=free,
            max_store_bytes=self.max_store_bytes,
        )  # fmt: skip

    def scan(self, busy: set[str]) -> tuple[dict[Key, VersionFiles], list[Leftover], int]:
        """Blocking: the version folders, temp/ and the free space."""
        from sidecar.core.usage import free_bytes, scan_leftovers, scan_versions

        return (
            scan_versions(self.layout),
            scan_leftovers(self.layout, busy),
            free_bytes(self.layout),
        )

    # --- pin -------------------------------------------------------------------------

    async def pin(self, model_id: str, version: str | None, pinned: bool) -> PinResult:
        check_safe_name(model_id, "modelId")
        model = self.registry.document.models.get(model_id)
        if model is None or not model.versions or (version and version not in model.versions):
            raise ModelNotAvailable(model_id, version, "not_installed")
        chosen = version or max(model.versions, key=version_key)

        def mutate(document: RegistryDocument) -> None:
            found = document.models.get(model_id)
            if found and chosen in found.versions:
                found.versions[chosen] = found.versions[chosen].model_copy(
                    update={"pinned": pinned}
                )

        with map_home_errors():
            await anyio.to_thread.run_sync(self.registry.update, mutate)
        if self.registry.installed(model_id, chosen) is None:
            raise ModelNotAvailable(model_id, chosen, "not_installed")  # removed meanwhile
        return PinResult(model_id=model_id, version=chosen, pinned=pinned)

    # --- removing what nobody asked to remove -----------------------------------------

    async def take(self, model_id: str, version: str, reason: str) -> bool:
        """Remove an installed version for eviction or prune; False if a task (here or
        in another process) holds it. The caller checked pins and leases."""
        if (model_id, version) in self.manager.active:
            return False
        lock = OwnedLock(
            self.layout.task_lock(model_id, version), model_id, version,
            self.manager.settings.lock_timeout_ms,
        )  # fmt: skip
        with map_home_errors():
            if not await anyio.to_thread.run_sync(lock.try_acquire):
                return False
        try:
            folder = self.layout.model_dir(model_id, version)
            await anyio.to_thread.run_sync(self.layout.fs.check, folder)
            with map_home_errors():
                await anyio.to_thread.run_sync(remove_version, self.layout, model_id, version)
                await anyio.to_thread.run_sync(self.registry.forget, model_id, version)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lock.release)
        self.last_used.forget(model_id, version)
        log.info("%s %s@%s", reason, model_id, version)
        changed = ModelsChanged(
            model_id=model_id,
            version=version,
            state="removed",
            reason=reason,
        )
        await self.manager.notify("models.changed", changed.wire())
        return True

    # --- quota -----------------------------------------------------------------------

    def check_damaged(self, chain: list[tuple[CatalogModel, str]], repair: bool) -> None:
        """A damaged version is not fetched whole again behind the user's back: it is
        repaired (only its wrong files fetched) when asked to."""
        for model, version in chain:
            entry = self.registry.installed(model.id, version)
            if entry is not None and entry.state == "damaged" and not repair:
                raise InvalidState(
                    f"{model.id}@{version} is damaged (verify found files that do not match); "
                    f"repair it with install {{repair: true}} (model-manager install --repair "
                    f"{model.id}@{version}), which fetches only the wrong files, or remove it",
                    modelId=model.id, version=version, reason="damaged",
                )  # fmt: skip

    async def make_room(self, chain: list[tuple[CatalogModel, str]]) -> None:
        """Before anything downloads: if the install would take the store past the
        quota, evict least recently used versions that may go; if they are not
        enough, fail with INSUFFICIENT_DISK_SPACE (reason quota) and evict nothing."""
        if not self.max_store_bytes:
            return
        async with self._room:
            wanted: dict[Key, int] = {}
            for model, version in chain:
                key = (model.id, version)
                entry = self.registry.installed(*key)
                manifest = model.find_version(version)
                if key in self.manager.active or manifest is None:
                    continue  # already counted, as a running task
                if entry is not None and entry.state == "ready":
                    continue
                wanted[key] = sum(f.size_bytes for f in manifest.files)
            if wanted:
                model, version = chain[0]
                keys = {(each.id, each_version) for each, each_version in chain}
                await self._make_room(wanted, keys, f"installing {model.id}@{version}", "")

    async def make_room_for(self, task: TaskRuntime, part_kept: bool = True) -> None:
        """The same for a task `install` did not check: one resumed (at start-up or by
        `resume`), or a plain URL's once its server stated its size (which it may do
        only once the whole file arrived). ``part_kept``: what it has on disk stays
        when it is refused (else the caller removes it)."""
        if not self.max_store_bytes or task.key not in self.manager.active:
            return
        source, details = task.url_source, []
        if source is not None:
            details.append(f"{source.filename} from {urlsplit(source.url).hostname}")
        if size := _size_of(task):
            details.append(mib(size))
        if not part_kept:
            note = "; what it downloaded so far was removed"
        elif task.raw_bytes:
            note = (
                f"; the {mib(task.raw_bytes)} it downloaded so far are kept: resume it once "
                f"there is room, or cancel it to free them"
            )
        else:
            note = ""
        what = f" ({', '.join(details)})" if details else ""
        label = f"installing {task.model_id}@{task.version}{what}"
        async with self._room:
            await self._make_room({}, {task.key}, label, note)

    async def _make_room(
        self, wanted: dict[Key, int], keys: set[Key], what: str, note: str
    ) -> None:
        """``wanted``: sizes of versions about to get a task; every task already here
        counts with what it still has to fetch. A version's bytes on disk (parts, as
        diskUsage counts them: a segmented part at its full size; a staging folder; a
        damaged copy) are the store's already, never counted again as needed."""
        from sidecar.core.usage import VersionFiles, freed_by, models_bytes

        quota = self.max_store_bytes
        busy = self.busy_keys()
        versions, leftovers, _ = await anyio.to_thread.run_sync(self.scan, busy)
        used = models_bytes(versions) + sum(item.size for item in leftovers)
        sizes = {key: _size_of(task) for key, task in self.manager.active.items()} | wanted

        def on_disk(key: Key) -> int:
            name = self.layout.version_key(*key)
            kept = sum(i.size for i in leftovers if i.kind != "trash" and i.key == name)
            return kept + versions.get(key, VersionFiles()).size

        needed = sum(max(0, size - on_disk(key)) for key, size in sizes.items())
        if used + needed <= quota:
            return
        document = self.registry.document
        candidates: list[tuple[float, Key]] = []
        kept: list[str] = []
        for model_id, installed in document.models.items():
            for version, entry in installed.versions.items():
                key = (model_id, version)
                why = "needed by this install" if key in keys else self.why_kept(key, entry)
                if why:
                    kept.append(f"{model_id}@{version} ({why})")
                else:
                    candidates.append((self.used_at(key, entry), key))
        chosen: set[Key] = set()
        order: list[Key] = []
        for _, key in sorted(candidates):
            if used - freed_by(versions, chosen) + needed <= quota:
                break
            chosen.add(key)
            order.append(key)
        if used - freed_by(versions, chosen) + needed > quota:
            raise _quota_error(what, needed, used, quota, kept, note)
        for key in order:
            if not await self.take(*key, reason="evicted"):
                raise _quota_error(what, needed, used, quota, [*kept, f"{key[0]}@{key[1]}"], note)


def _size_of(task: TaskRuntime) -> int:
    """What the task's version takes once installed (0: a plain URL not answered yet)."""
    if task.manifest is not None:
        return sum(f.size_bytes for f in task.manifest.files)
    return task.bytes_total


def _quota_error(
    what: str, needed: int, used: int, quota: int, kept: list[str], note: str
) -> InsufficientDiskSpace:
    held = f"; kept: {', '.join(sorted(kept))}" if kept else ""
    return InsufficientDiskSpace(
        f"{what} needs {mib(needed)} more, and the store already takes {mib(used)} of its "
        f"quota of {mib(quota)}; nothing more can be evicted{held}{note}. Raise the quota "
        f"(--max-store-bytes, setLimits maxStoreBytes), unpin or remove models",
        reason="quota", neededBytes=needed, storeBytes=used, maxStoreBytes=quota,
    )  # fmt: skip
