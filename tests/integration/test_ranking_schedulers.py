"""The ranking belongs to the scheduler it came from (issue 15, item 5): the sidecar
never answers one scheduler's ranking for another, and says ``stale`` whenever the
answer did not come from the configured scheduler just now. Real reference servers on
loopback as the schedulers, the real sidecar over its pipes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from model_repo.background import BackgroundServer
from tests.support.repo_helpers import free_port
from tests.support.sidecar_proc import RpcError


def scheduler_with(storage: Path, counts: dict[str, int]) -> BackgroundServer:
    storage.mkdir(parents=True, exist_ok=True)
    server = BackgroundServer(storage).start()
    for model_id, count in counts.items():
        for _ in range(count):
            event = {"model_id": model_id, "kind": "request"}
            httpx.post(f"{server.url}/api/model-usage/events", json=event).raise_for_status()
    return server


def ranked(answer: dict) -> list[str]:
    return [item["modelId"] for item in answer["items"]]


def test_a_ranking_is_never_answered_for_another_scheduler(start_sidecar, tmp_path: Path):
    first = scheduler_with(tmp_path / "a", {"from-a": 2})
    try:
        sidecar = start_sidecar(args=["--scheduler", first.url])
        answer = sidecar.call("ranking")
        assert ranked(answer) == ["from-a"] and answer["stale"] is False
        sidecar.stop()

        # Reported: pointed at a scheduler that is down, the sidecar answered the first
        # one's cached ranking with stale: false.
        down = f"http://127.0.0.1:{free_port()}"
        other = start_sidecar(args=["--scheduler", down])
        with pytest.raises(RpcError) as raised:
            other.call("ranking")
        assert raised.value.data["code"] == "SCHEDULER_UNAVAILABLE"
        assert down in raised.value.message
        other.stop()

        second = scheduler_with(tmp_path / "b", {"from-b": 1})
        try:
            third = start_sidecar(args=["--scheduler", second.url])
            answer = third.call("ranking")
            assert ranked(answer) == ["from-b"] and answer["stale"] is False
            third.stop()
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_ranking_from_an_earlier_run_is_stale(start_sidecar, tmp_path: Path):
    scheduler = scheduler_with(tmp_path / "a", {"m": 1})
    url = scheduler.url
    try:
        sidecar = start_sidecar(args=["--scheduler", url])
        assert sidecar.call("ranking")["stale"] is False
        sidecar.stop()
    finally:
        scheduler.stop()
    # The same scheduler, now down: its last ranking, said to be stale (even seconds old).
    again = start_sidecar(args=["--scheduler", url])
    answer = again.call("ranking")
    assert ranked(answer) == ["m"] and answer["stale"] is True


def test_no_scheduler_says_how_to_set_one(start_sidecar):
    sidecar = start_sidecar()
    with pytest.raises(RpcError) as raised:
        sidecar.call("ranking")
    assert raised.value.data["code"] == "SCHEDULER_UNAVAILABLE"
    assert "--scheduler" in raised.value.message
    assert "MODEL_MANAGER_SCHEDULER" in raised.value.message


def test_the_usage_api_refuses_an_unknown_kind(tmp_path: Path):
    server = scheduler_with(tmp_path / "s", {})
    try:
        events = f"{server.url}/api/model-usage/events"
        refused = httpx.post(events, json={"model_id": "m", "kind": "bogus"})
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "INVALID_EVENT"
        assert "kind" in error["message"] and "known kinds: request" in error["message"]
        assert httpx.get(f"{server.url}/api/model-usage/ranking").json() == []
        assert httpx.post(events, json={"model_id": "m", "kind": "request"}).status_code == 201
        ranking = httpx.get(f"{server.url}/api/model-usage/ranking").json()
        assert [(e["model_id"], e["request_count"]) for e in ranking] == [("m", 1)]
    finally:
        server.stop()
