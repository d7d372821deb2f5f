"""The usage store on a real PostgreSQL cluster (started by the tests) beside SQLite:
one schema, migrations at start, the ranking read through its index, and the server's
validation and per-address limits in front of it."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model_repo.background import BackgroundServer
from model_repo.usage import UsageEvent, open_usage_store
from model_repo.usage_pg import PostgresUsageStore
from tests.support.postgres import PostgresCluster

_names = itertools.count()


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> str:
    return postgres.create_database(f"usage_{next(_names)}")


@pytest.fixture(params=["sqlite", "postgres"])
def usage_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "usage.sqlite3")
    else:
        yield request.getfixturevalue("pg_url")


def test_both_stores_rank_the_same_way(usage_target: str):
    store = open_usage_store(usage_target)
    try:
        assert store.ranking() == []
        for model_id, count in {"marian-zh-en": 5, "whisper-small": 3, "align": 3}.items():
            for n in range(count):
                kind = "MODEL_NOT_AVAILABLE" if n % 2 else "request"
                store.record(UsageEvent(model_id=model_id, kind=kind))
        assert [(e.model_id, e.request_count, e.rank) for e in store.ranking()] == [
            ("marian-zh-en", 5, 1),
            ("align", 3, 2),  # ties by id
            ("whisper-small", 3, 3),
        ]
        assert store.event_count() == 11
    finally:
        store.close()
    # A second start migrates nothing again and sees the same data.
    again = open_usage_store(usage_target)
    try:
        assert again.ranking(limit=1)[0].request_count == 5
    finally:
        again.close()


def _old_schema_rows(target: str, rows: list[tuple[str, str]]) -> None:
    """A database as the first release left it: events only, no migrations table."""
    ddl = "CREATE TABLE usage_events (id {id}, model_id TEXT NOT NULL, kind TEXT NOT NULL, "
    ddl += "recorded_at {real} NOT NULL)"
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target) as db:
            db.execute(
                ddl.format(id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", real="FLOAT8")
            )
            for model_id, kind in rows:
                db.execute(
                    "INSERT INTO usage_events (model_id, kind, recorded_at) VALUES (%s, %s, 0)",
                    (model_id, kind),
                )
    else:
        with sqlite3.connect(target) as db:
            db.execute(ddl.format(id="INTEGER PRIMARY KEY", real="REAL"))
            db.executemany(
                "INSERT INTO usage_events (model_id, kind, recorded_at) VALUES (?, ?, 0)", rows
            )


def test_migrations_carry_old_events_into_the_ranking(usage_target: str):
    _old_schema_rows(usage_target, [("a", "request")] * 2 + [("b", "request")] * 3)
    store = open_usage_store(usage_target)
    try:
        assert [(e.model_id, e.request_count) for e in store.ranking()] == [("b", 3), ("a", 2)]
        store.record(UsageEvent(model_id="a", kind="request"))
        store.record(UsageEvent(model_id="a", kind="request"))
        assert [(e.model_id, e.request_count) for e in store.ranking()] == [("a", 4), ("b", 3)]
    finally:
        store.close()


def test_the_ranking_is_the_top_of_an_index(pg_url: str):
    import psycopg

    store = PostgresUsageStore(pg_url)
    try:
        with psycopg.connect(pg_url) as db:
            db.execute(
                "INSERT INTO usage_counts (model_id, request_count) "
                "SELECT 'model-' || n, (n * 7919) % 100000 FROM generate_series(1, 50000) n"
            )
            db.execute("ANALYZE usage_counts")
        plan = store.explain_ranking(100)
        # The top of the index, nothing sorted; the events table is never read.
        assert "Index Only Scan using usage_counts_rank" in plan, plan
        assert "Sort" not in plan and "usage_events" not in plan, plan
    finally:
        store.close()


def test_server_on_postgres_validates_and_limits_events(pg_url: str, tmp_path: Path):
    server = BackgroundServer(tmp_path / "storage", usage_db=pg_url, event_rate=1, event_burst=3)
    with server, httpx.Client(base_url=server.url, trust_env=False) as client:
        bad_kind = client.post("/api/model-usage/events", json={"model_id": "a", "kind": "x"})
        assert bad_kind.status_code == 400
        assert "MODEL_NOT_AVAILABLE" in bad_kind.json()["error"]["message"]
        bad_id = client.post("/api/model-usage/events", json={"model_id": "../a"})
        assert bad_id.status_code == 400
        # The two refusals above used two of the three tokens of the burst.
        ok = client.post("/api/model-usage/events", json={"model_id": "a"})
        assert ok.status_code == 201
        limited = client.post("/api/model-usage/events", json={"model_id": "a"})
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "RATE_LIMITED"
        assert int(limited.headers["Retry-After"]) >= 1
        assert client.get("/api/model-usage/ranking").json() == [
            {"model_id": "a", "request_count": 1, "rank": 1}
        ]
