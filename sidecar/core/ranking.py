"""The "Top Models" ranking from the scheduling server, with the last good answer kept
(in memory and on disk) for when the scheduler is down."""

from __future__ import annotations

import hashlib
import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import anyio
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from sidecar.config import Settings
from sidecar.errors import SchedulerUnavailable
from sidecar.store.fsutil import atomic_write_bytes
from sidecar.store.layout import HomeLayout
from sidecar.transfer.http import JsonClient, SourceFailed, TransientError

log = logging.getLogger(__name__)

MAX_RANKING_BYTES = 4 * 1024 * 1024  # ~40k entries; the app shows at most 1000


class RankingEntry(BaseModel):
    model_id: Annotated[str, Field(min_length=1, max_length=256)]
    request_count: Annotated[int, Field(ge=0)]
    rank: Annotated[int, Field(ge=0)]


class CachedRanking(BaseModel):
    fetched_at: str
    entries: list[RankingEntry]
    # Whose ranking this is: a ranking is only ever answered for the scheduler it came from.
    scheduler: str | None = None


_entries = TypeAdapter(list[RankingEntry])

# An answer fetched this long ago by this process still counts as "from the scheduler
# now": the app may ask on every screen, and a few seconds' memo spares the scheduler.
# A ranking read from disk or older than this is answered as stale.
FRESH_SECONDS = 5.0
NO_SCHEDULER = (
    "no scheduler configured; set one with --scheduler URL (or the MODEL_MANAGER_SCHEDULER "
    "environment variable; model-manager takes --scheduler too)"
)


class RankingSource:
    def __init__(self, settings: Settings, layout: HomeLayout, client: JsonClient) -> None:
        self.settings = settings
        self.client = client
        self.cache_dir = layout.cache
        self.cached: CachedRanking | None = None  # this scheduler's last good ranking
        self._fetched = -math.inf  # anyio.current_time() of our last fetch of it
        self._lock = anyio.Lock()

    async def get(self, refresh: bool) -> tuple[CachedRanking, bool]:
        """(ranking, stale): stale unless the configured scheduler gave it just now.
        Answers within ``ranking_timeout`` whatever the scheduler does."""
        scheduler = self.settings.scheduler
        if not scheduler:
            raise SchedulerUnavailable(f"no ranking available: {NO_SCHEDULER}")
        async with self._lock:
            if self.cached is None:
                self.cached = await anyio.to_thread.run_sync(self._load_cache, scheduler)
            recent = anyio.current_time() - self._fetched < FRESH_SECONDS
            if self.cached is not None and not refresh and recent:
                return self.cached, False
            problem = f"no answer within {self.settings.ranking_timeout}s"
            with anyio.move_on_after(self.settings.ranking_timeout):
                try:
                    fresh = await self._fetch(scheduler)
                except (TransientError, SourceFailed, ValidationError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                else:
                    self.cached, self._fetched = fresh, anyio.current_time()
                    await anyio.to_thread.run_sync(self._save, fresh)
                    return fresh, False
            if self.cached is not None:
                log.warning("ranking: %s; answering with the last good one", problem)
                return self.cached, True
            raise SchedulerUnavailable(
                f"no ranking available from {scheduler}: {problem}", scheduler=scheduler
            )

    async def _fetch(self, scheduler: str) -> CachedRanking:
        url = f"{scheduler}/api/model-usage/ranking"
        raw = await self.client.get_json(
            url,
            headers={},
            max_bytes=MAX_RANKING_BYTES,
            deadline=self.settings.ranking_timeout,
        )
        if raw is None:
            raise SourceFailed(f"HTTP 404 from {url}")
        entries = _entries.validate_python(raw)
        return CachedRanking(
            fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
            entries=sorted(entries, key=lambda e: e.rank),
            scheduler=scheduler,
        )

    def _cache_path(self, scheduler: str) -> Path:
        """One file per scheduler URL: a home used with several never mixes them up."""
        digest = hashlib.sha256(scheduler.encode()).hexdigest()[:16]
        return self.cache_dir / f"ranking-{digest}.json"

    def _load_cache(self, scheduler: str) -> CachedRanking | None:
        try:
            cached = CachedRanking.model_validate_json(self._cache_path(scheduler).read_bytes())
        except (OSError, ValueError):
            return None
        return cached if cached.scheduler == scheduler else None

    def _save(self, ranking: CachedRanking) -> None:
        assert ranking.scheduler is not None
        try:
            path = self._cache_path(ranking.scheduler)
            atomic_write_bytes(path, ranking.model_dump_json().encode())
        except OSError as exc:
            log.warning("cannot cache the ranking: %s", exc)
