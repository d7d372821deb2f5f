"""When each version was last handed out by getModelPath. ``touch`` runs on the event
loop for every answer, so it only writes memory; ``last-used.json`` is written at most
every FLUSH_INTERVAL seconds, and at shutdown (never a file write per call)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio

from sidecar.store.fsutil import atomic_write_json, read_json
from sidecar.store.layout import HomeLayout
from sidecar.store.locks import BlockingFileLock

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 5.0
Key = tuple[str, str]


def last_used_file(layout: HomeLayout) -> Path:
    return layout.root / "last-used.json"


class LastUsed:
    def __init__(self, layout: HomeLayout) -> None:
        self.path = last_used_file(layout)
        self.lock = layout.root / "last-used.json.lock"
        self.times: dict[Key, float] = {}  # seconds since the epoch
        self._dirty = False
        self._removed: set[Key] = set()  # versions gone: dropped from the file too

    def rehome(self, layout: HomeLayout) -> None:
        self.path = last_used_file(layout)
        self.lock = layout.root / "last-used.json.lock"

    def touch(self, model_id: str, version: str) -> None:
        self.times[(model_id, version)] = time.time()
        self._dirty = True

    def get(self, model_id: str, version: str) -> float | None:
        return self.times.get((model_id, version))

    def forget(self, model_id: str, version: str) -> None:
        self.times.pop((model_id, version), None)
        self._removed.add((model_id, version))
        self._dirty = True

    # --- blocking ------------------------------------------------------------------

    def load(self) -> None:
        self.times = {**self._read(), **self.times}

    def flush(self) -> None:
        """Merge with what another sidecar on this home wrote: the later time wins."""
        if not self._dirty:
            return
        self._dirty = False
        mine, removed = dict(self.times), set(self._removed)
        self._removed.clear()
        try:
            with BlockingFileLock(self.lock, timeout=5.0):
                merged = self._read()
                for key, when in mine.items():
                    merged[key] = max(when, merged.get(key, 0.0))
                for key in removed - set(mine):
                    merged.pop(key, None)
                document: dict[str, dict[str, float]] = {}
                for (model_id, version), when in sorted(merged.items()):
                    document.setdefault(model_id, {})[version] = round(when, 3)
                atomic_write_json(self.path, document)
        except OSError as exc:  # a full or read-only home: the times stay in memory
            self._dirty = True
            self._removed |= removed
            log.warning("cannot save last-used times: %s", exc)

    def _read(self) -> dict[Key, float]:
        try:
            raw = read_json(self.path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("last-used.json unreadable (%s): starting afresh", exc)
            return {}
        found: dict[Key, float] = {}
        if isinstance(raw, dict):
            for model_id, versions in raw.items():
                if not isinstance(versions, dict):
                    continue
                for version, when in versions.items():
                    if isinstance(when, int | float) and not isinstance(when, bool):
                        found[(str(model_id), str(version))] = float(when)
        return found

    async def serve(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.load)
            while True:
                await anyio.sleep(FLUSH_INTERVAL)
                await anyio.to_thread.run_sync(self.flush)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.flush)
