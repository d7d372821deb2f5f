"""Model demand, recorded per event, and the ranking computed from it in SQL.

The node agents report every request for a model (``kind`` says what happened, e.g.
``MODEL_NOT_AVAILABLE`` when a node had to hand a job back); the ranking counts them
all, because all of them are demand a node with the model installed could serve.

Two stores with one schema: SQLite (the embedded default, one file) and PostgreSQL
(``usage_pg``, shared by many servers). ``usage_events`` is the append-only truth;
``usage_counts`` is kept in the same transaction as each insert, so the ranking is a
top-N walk of an index (``usage_counts_rank``) instead of a scan of millions of events.
Migrations are numbered and applied at start. Blocking calls: the server runs them in
worker threads.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sidecar.errors import UnsafeManifest
from sidecar.manifest import check_safe_name

# What an event may say happened. Anything else is refused: an unknown kind is a bug
# or a forgery, and would otherwise pile up in the table unseen.
EVENT_KINDS = ("request", "MODEL_NOT_AVAILABLE")
Kind = Literal["request", "MODEL_NOT_AVAILABLE"]

# Numbered steps, applied in order, each once (recorded in usage_schema).
SQLITE_MIGRATIONS = (
    # 1: the original table (databases from before migrations already have it).
    """
    CREATE TABLE IF NOT EXISTS usage_events (
        id INTEGER PRIMARY KEY,
        model_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        recorded_at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS usage_events_model ON usage_events (model_id);
    """,
    # 2: per-model counts kept with every insert, and the index the ranking reads.
    """
    CREATE TABLE usage_counts (
        model_id TEXT PRIMARY KEY,
        request_count INTEGER NOT NULL
    );
    INSERT INTO usage_counts (model_id, request_count)
        SELECT model_id, COUNT(*) FROM usage_events GROUP BY model_id;
    CREATE INDEX usage_counts_rank ON usage_counts (request_count DESC, model_id);
    """,
)

# The ranking walks usage_counts_rank from the top and stops after ``limit`` rows.
RANKING_SQL = (
    "SELECT model_id, request_count FROM usage_counts "
    "ORDER BY request_count DESC, model_id ASC LIMIT {limit}"
)
COUNT_SQL = (
    "INSERT INTO usage_counts (model_id, request_count) VALUES ({p}, 1) "
    "ON CONFLICT (model_id) DO UPDATE SET request_count = usage_counts.request_count + 1"
)


class UsageEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")  # agents may send more context later
    model_id: Annotated[str, Field(min_length=1, max_length=128)]
    kind: Kind = "request"

    @field_validator("model_id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        # The rule clients apply to catalog ids: what is ranked can be installed.
        try:
            check_safe_name(value, "model_id")
        except UnsafeManifest as exc:
            raise ValueError(exc.message) from exc
        return value


class RankingEntry(BaseModel):
    model_id: str
    request_count: Annotated[int, Field(ge=0)]
    rank: Annotated[int, Field(ge=1)]


class UsageBackend(Protocol):
    def record(self, event: UsageEvent) -> None: ...
    def ranking(self, limit: int = 100) -> list[RankingEntry]: ...
    def event_count(self) -> int: ...
    def close(self) -> None: ...


def ranked(rows: list[tuple[str, int]]) -> list[RankingEntry]:
    return [
        RankingEntry(model_id=model_id, request_count=count, rank=position)
        for position, (model_id, count) in enumerate(rows, start=1)
    ]


class UsageStore:
    """The SQLite store: one file, fine for one server and a small team."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            migrate_sqlite(db)

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
            db.execute(COUNT_SQL.format(p="?"), (event.model_id,))

    def ranking(self, limit: int = 100) -> list[RankingEntry]:
        with self._connect() as db:
            rows = db.execute(RANKING_SQL.format(limit="?"), (limit,)).fetchall()
        return ranked(rows)

    def event_count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM usage_events").fetchone()[0])

    def close(self) -> None:
        pass


def migrate_sqlite(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")  # one migrator at a time; others wait (timeout)
    db.execute("CREATE TABLE IF NOT EXISTS usage_schema (version INTEGER NOT NULL)")
    row = db.execute("SELECT MAX(version) FROM usage_schema").fetchone()
    done = row[0] or 0
    for number, step in enumerate(SQLITE_MIGRATIONS, start=1):
        if number > done:
            for statement in filter(str.strip, step.split(";")):
                db.execute(statement)
            db.execute("INSERT INTO usage_schema (version) VALUES (?)", (number,))


def open_usage_store(target: str | Path) -> UsageBackend:
    """``postgresql://…`` (or ``postgres://…``) for the shared store, else a SQLite path."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        from model_repo.usage_pg import PostgresUsageStore

        return PostgresUsageStore(text)
    return UsageStore(Path(text))
