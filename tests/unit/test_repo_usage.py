"""The usage ranking, computed from recorded events; and the path checks of the server."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from model_repo.server import unsafe_path_reason
from model_repo.usage import UsageEvent, UsageStore


def test_ranking_counts_every_event_per_model(tmp_path: Path):
    store = UsageStore(tmp_path / "usage.sqlite3")
    assert store.ranking() == []
    events = {"marian-zh-en": 5, "whisper-small": 3, "align": 3, "rare": 1}
    for model_id, count in events.items():
        for n in range(count):
            kind = "MODEL_NOT_AVAILABLE" if n % 2 else "request"
            store.record(UsageEvent(model_id=model_id, kind=kind))
    ranking = [entry.model_dump() for entry in store.ranking()]
    assert ranking == [
        {"model_id": "marian-zh-en", "request_count": 5, "rank": 1},
        {"model_id": "align", "request_count": 3, "rank": 2},  # ties: by id, stable
        {"model_id": "whisper-small", "request_count": 3, "rank": 3},
        {"model_id": "rare", "request_count": 1, "rank": 4},
    ]
    assert [e.model_id for e in store.ranking(limit=2)] == ["marian-zh-en", "align"]
    # Persistent: a new store on the same file sees the same events.
    assert UsageStore(tmp_path / "usage.sqlite3").ranking(limit=1)[0].request_count == 5


@pytest.mark.parametrize(
    "raw",
    [{}, {"model_id": ""}, {"model_id": "../x"}, {"model_id": "a", "kind": "no spaces"}],
)
def test_malformed_events_are_refused(raw: dict[str, str]):
    with pytest.raises(ValidationError):
        UsageEvent.model_validate(raw)


@pytest.mark.parametrize(
    "path",
    [
        "/storage/models/../../etc/passwd",
        "/storage/models/a/1/./x",
        "/storage/models//etc/passwd",
        "/storage/models/a/1/..\\..\\x",
        "/storage/models/a/1/%2e%2e/x",  # still encoded once more after decoding
        "/storage/models/a/1/x\x00.bin",
    ],
)
def test_traversal_syntax_is_recognized(path: str):
    assert unsafe_path_reason(path, None) is not None


def test_ordinary_paths_pass():
    assert unsafe_path_reason("/storage/models/a/1.0.0/dir/file.bin", None) is None
    assert unsafe_path_reason("/api/models", b"/api/models") is None


def test_rate_limiter_allows_a_burst_then_the_rate_per_address():
    from model_repo.ratelimit import RateLimiter

    limiter = RateLimiter(rate=2.0, burst=3.0, max_clients=2)
    assert [limiter.allow("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.allow("a", now=0.0) == pytest.approx(0.5)  # one token in 1/rate
    assert limiter.allow("b", now=0.0) == 0.0  # another address has its own bucket
    assert limiter.allow("a", now=0.5) == 0.0  # refilled
    # Memory stays bounded: the oldest address is forgotten and starts full again.
    limiter.allow("c", now=0.5)
    assert len(limiter._buckets) == 2


@pytest.mark.parametrize("kind", ["installed", "request ", "", "MODEL_NOT_AVAILABLE\n"])
def test_event_kinds_come_from_a_fixed_set(kind: str):
    with pytest.raises(ValidationError):
        UsageEvent.model_validate({"model_id": "a", "kind": kind})
    assert UsageEvent.model_validate({"model_id": "a"}).kind == "request"
