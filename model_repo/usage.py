"""Model demand, recorded per event in SQLite, and the ranking computed from it.

The node agents report every request for a model (``kind`` says what happened, e.g.
``MODEL_NOT_AVAILABLE`` when a node had to hand a job back); the ranking counts them
all, because all of them are demand a node with the model installed could serve.
Blocking calls: the server runs them in worker threads.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_events (
    id INTEGER PRIMARY KEY,
    model_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_events_model ON usage_events (model_id);
"""

Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")]


class UsageEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")  # agents may send more context later
    model_id: Token
    kind: Token = "request"


class RankingEntry(BaseModel):
    model_id: str
    request_count: Annotated[int, Field(ge=0)]
    rank: Annotated[int, Field(ge=1)]


class UsageStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One short connection per call: no connection shared across threads, and
        # WAL lets the ranking read while events are being written.
        with closing(sqlite3.connect(self.path, timeout=10.0)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            with db:  # commits, or rolls back on error
                yield db

    def record(self, event: UsageEvent) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO usage_events (model_id, kind, recorded_at) VALUES (?, ?, ?)",
                (event.model_id, event.kind, time.time()),
            )

    def ranking(self, limit: int = 100) -> list[RankingEntry]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT model_id, COUNT(*) AS n FROM usage_events GROUP BY model_id "
                "ORDER BY n DESC, model_id ASC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            RankingEntry(model_id=model_id, request_count=count, rank=position)
            for position, (model_id, count) in enumerate(rows, start=1)
        ]
