"""The "Top Models" ranking from the scheduling server, with the last good answer kept
(in memory and on disk) for when the scheduler is down."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
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


_entries = TypeAdapter(list[RankingEntry])


class RankingSource:
    def __init__(self, settings: Settings, layout: HomeLayout, client: JsonClient) -> None:
        self.settings = settings
        self.client = client
        self.cache_path = layout.cache / "ranking.json"
        self.cached: CachedRanking | None = None
        self._lock = anyio.Lock()

    async def get(self, refresh: bool) -> tuple[CachedRanking, bool]:
        """(ranking, stale). Answers within ``ranking_timeout`` whatever the scheduler does."""
        async with self._lock:
            if self.cached is None:
                self.cached = await anyio.to_thread.run_sync(self._load_cache)
            if self.cached is not None and not refresh and self._recent(self.cached):
                return self.cached, False
            problem = "working offline" if self.settings.offline else "no scheduler configured"
            if self.settings.scheduler and not self.settings.offline:
                with anyio.move_on_after(self.settings.ranking_timeout):
                    try:
                        fresh = await self._fetch()
                    except (TransientError, SourceFailed, ValidationError) as exc:
                        problem = f"{type(exc).__name__}: {exc}"
                    else:
                        self.cached = fresh
                        await anyio.to_thread.run_sync(self._save, fresh)
                        return fresh, False
                if problem == "no scheduler configured":
                    problem = f"no answer within {self.settings.ranking_timeout}s"
            if self.cached is not None:
                log.warning("ranking: %s; answering with the last good one", problem)
                return self.cached, True
            raise SchedulerUnavailable(
                f"no ranking available: {problem}",
                **({"reason": "offline"} if self.settings.offline else {}),
            )

    async def _fetch(self) -> CachedRanking:
        url = f"{self.settings.scheduler}/api/model-usage/ranking"
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
        )

    def _recent(self, cached: CachedRanking) -> bool:
        age = datetime.now(UTC) - datetime.fromisoformat(cached.fetched_at)
        return age.total_seconds() < 30

    def _load_cache(self) -> CachedRanking | None:
        try:
            return CachedRanking.model_validate_json(self.cache_path.read_bytes())
        except (OSError, ValueError):
            return None

    def _save(self, ranking: CachedRanking) -> None:
        try:
            atomic_write_bytes(self.cache_path, ranking.model_dump_json().encode())
        except OSError as exc:
            log.warning("cannot cache the ranking: %s", exc)
