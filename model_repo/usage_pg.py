"""The usage store on PostgreSQL (psycopg 3): the schema of ``usage`` shared by every
server, migrations applied at start under an advisory lock (several workers starting
at once migrate once), and a small connection pool per process.

Each event is one transaction: the insert into ``usage_events`` and the increment of
its model's row in ``usage_counts``. The ranking walks the index ``usage_counts_rank``
from the top, so its cost does not grow with the number of events (see
deploy/README.md for the plan).
"""

from __future__ import annotations

import time
from typing import Any

from model_repo.usage import COUNT_SQL, RANKING_SQL, RankingEntry, UsageEvent, ranked

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS usage_events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        model_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        recorded_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX IF NOT EXISTS usage_events_model ON usage_events (model_id);
    """,
    """
    CREATE TABLE usage_counts (
        model_id TEXT PRIMARY KEY,
        request_count BIGINT NOT NULL
    );
    INSERT INTO usage_counts (model_id, request_count)
        SELECT model_id, COUNT(*) FROM usage_events GROUP BY model_id;
    CREATE INDEX usage_counts_rank ON usage_counts (request_count DESC, model_id);
    """,
)
MIGRATION_LOCK = 0x6D6F64656C  # pg_advisory_xact_lock key: "model"
POOL_SIZE = 8


class PostgresUsageStore:
    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - the "repo" extra brings them
            raise RuntimeError("--usage-db postgresql:// needs 'model-manager[repo]'") from exc
        with psycopg.connect(url, connect_timeout=10) as db:
            migrate(db)
        options = {"connect_timeout": 10, "autocommit": True}
        self.pool = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=True, timeout=30.0, kwargs=options,
            name="usage-writes",
        )  # fmt: skip
        # Reads have connections of their own: a ranking never queues behind a burst
        # of events waiting for their commits.
        self.read_pool = ConnectionPool(
            url, min_size=1, max_size=2, open=True, timeout=30.0, kwargs=options,
            name="usage-reads",
        )  # fmt: skip

    def record(self, event: UsageEvent) -> None:
        # One statement, so one round trip and one (implicit) transaction for both rows.
        with self.pool.connection() as db:
            db.execute(
                "WITH event AS (INSERT INTO usage_events (model_id, kind, recorded_at) "
                "VALUES (%s, %s, %s)) " + COUNT_SQL.format(p="%s"),
                (event.model_id, event.kind, time.time(), event.model_id),
            )  # fmt: skip

    def ranking(self, limit: int = 100) -> list[RankingEntry]:
        with self.read_pool.connection() as db:
            rows = db.execute(RANKING_SQL.format(limit="%s"), (limit,)).fetchall()
        return ranked([(str(m), int(n)) for m, n in rows])

    def event_count(self) -> int:
        with self.pool.connection() as db:
            row = db.execute("SELECT COUNT(*) FROM usage_events").fetchone()
        return int(row[0]) if row else 0

    def explain_ranking(self, limit: int = 100) -> str:
        with self.pool.connection() as db:
            rows = db.execute("EXPLAIN " + RANKING_SQL.format(limit="%s"), (limit,)).fetchall()
        return "\n".join(str(r[0]) for r in rows)

    def close(self) -> None:
        self.pool.close()
        self.read_pool.close()


def migrate(db: Any) -> None:
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        db.execute("CREATE TABLE IF NOT EXISTS usage_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT MAX(version) FROM usage_schema").fetchone()
        done = (row[0] if row else None) or 0
        for number, step in enumerate(MIGRATIONS, start=1):
            if number > done:
                db.execute(step)
                db.execute("INSERT INTO usage_schema (version) VALUES (%s)", (number,))
