"""prune: remove versions that are neither the newest installed of their model (nor
the newest ready one, when the newest is damaged or incomplete) nor pinned nor in
use, partial downloads nobody is writing that are older than N days, staging folders
no install holds, and trash a kill left. A part is only removed under its own lock,
taken from a holder that is dead or hung (see ``sidecar.store.locks``), so a live
writer, in this process or another, never loses its part."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from sidecar.core.listing import version_key
from sidecar.core.usage import Leftover, freed_by, lock_held, remove_leftover
from sidecar.store.locks import OwnedLock
from sidecar.wire_store import PrunedItem, PruneResult

if TYPE_CHECKING:
    from sidecar.core.eviction import StoreKeeper

log = logging.getLogger(__name__)

DAY = 86400.0


async def prune(keeper: StoreKeeper, dry_run: bool, older_than_days: float) -> PruneResult:
    busy = keeper.busy_keys()
    versions, leftovers, _ = await anyio.to_thread.run_sync(keeper.scan, busy)
    kept: list[str] = []
    old: list[tuple[str, str]] = []
    for model_id, model in sorted(keeper.registry.document.models.items()):
        ordered = sorted(model.versions, key=version_key)
        # The newest, and the newest that works when that one is damaged or incomplete.
        ready = [v for v in ordered if model.versions[v].state == "ready"]
        newest = {ordered[-1], *ready[-1:]}
        for version in (v for v in ordered if v not in newest):
            why = keeper.why_kept((model_id, version), model.versions[version])
            if why:
                kept.append(f"{model_id}@{version}: {why}")
            else:
                old.append((model_id, version))
    cutoff = time.time() - older_than_days * DAY
    stale: list[Leftover] = []
    for item in leftovers:
        if item.busy:
            kept.append(f"{item.path.name}: being written")
        elif item.kind == "part" and item.mtime > cutoff:
            kept.append(f"{item.path.name}: touched less than {older_than_days:g} days ago")
        else:
            stale.append(item)

    items: list[PrunedItem] = []
    freed = 0
    for model_id, version in old:
        size = freed_by(versions, {(model_id, version)})
        if dry_run or await keeper.take(model_id, version, reason="pruned"):
            items.append(PrunedItem(kind="version", model_id=model_id, version=version,
                                    name=f"{model_id}@{version}", size_bytes=size))  # fmt: skip
        else:
            kept.append(f"{model_id}@{version}: being installed")
    # Shared files of versions that all go are freed too: count the set as a whole.
    freed = freed_by(versions, {(i.model_id or "", i.version or "") for i in items})
    for item in stale:
        if not dry_run:
            removed = await anyio.to_thread.run_sync(_remove_unheld, keeper, item)
            if not removed:
                kept.append(f"{item.path.name}: being written")
                continue
        owner, owner_version = item.model_and_version
        items.append(PrunedItem(kind=item.kind, model_id=owner, version=owner_version,
                                name=item.path.name, size_bytes=item.size))  # fmt: skip
        freed += item.size
    if not dry_run and items:
        log.info("pruned %d items, %d bytes", len(items), freed)
    return PruneResult(dry_run=dry_run, items=items, freed_bytes=freed, kept=kept)


def _remove_unheld(keeper: StoreKeeper, item: Leftover) -> bool:
    """Remove ``item`` holding the lock a writer would take (blocking)."""
    layout = keeper.layout
    timeout = keeper.manager.settings.lock_timeout_ms
    model_id, version = item.model_and_version
    locks: list[OwnedLock] = []
    if item.key is not None and item.kind in ("part", "staging"):
        task_lock = layout.task_locks / f"{item.key}.lock"
        if item.kind == "part":
            locks.append(
                OwnedLock(
                    item.path.with_name(item.path.name + ".lock"),
                    model_id or "",
                    version or "",
                    timeout,
                )
            )
        else:
            locks.append(OwnedLock(task_lock, model_id or "", version or "", timeout))
        if item.kind == "part" and lock_held(task_lock):
            return False
    taken: list[OwnedLock] = []
    try:
        for lock in locks:
            if not lock.try_acquire():
                return False
            taken.append(lock)
        remove_leftover(item)
        return True
    finally:
        for lock in taken:
            lock.release()
