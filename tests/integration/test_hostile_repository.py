"""A hostile or broken repository, through the real sidecar over pipes: a manifest
dripped a byte at a time, a gzip bomb and JSON nested without end each get a typed
answer in bounded time and memory, never -32603, and the daemon carries on."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.hostile_json import (
    Compressed,
    Drip,
    RawJson,
    gzip_of_padded_json,
    manifest_text,
    nested,
)
from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError, Sidecar

REPOSITORY_UNAVAILABLE, UNSAFE_MANIFEST = 1004, 1008
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def install_error(sidecar: Sidecar, model_id: str, timeout: float = 30) -> RpcError:
    with pytest.raises(RpcError) as raised:
        sidecar.call("install", {"modelId": model_id}, timeout=timeout)
    return raised.value


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far, in bytes (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) * 1024


# --- 4. deadline ------------------------------------------------------------------------


def test_a_dripped_manifest_fails_within_the_deadline(start_sidecar, repo: RepoServer) -> None:
    """One byte every 0.2 s never trips the 3 s stall timeout; the deadline ends it."""
    drip = Drip(manifest_text("slow", []).encode(), interval=0.2)
    repo.fault = drip
    sidecar = start_sidecar(env={"MODEL_MANAGER_REQUEST_DEADLINE": "2"})
    try:
        error = install_error(sidecar, "slow")
        assert error.code == REPOSITORY_UNAVAILABLE, error.message
        assert "no complete reply within 2 s" in error.message
        # listModels answers too (from nothing cached: an empty, stale list).
        assert sidecar.call("listModels", {"refresh": True}, timeout=30)["stale"] is True
    finally:
        drip.release()
    repo.fault = None
    repo.add("slow", "1", {"w.bin": b"fine now"})
    assert sidecar.install_and_wait("slow")["state"] == "ready"


# --- 2 (JSON half). compression ---------------------------------------------------------


@linux_only
def test_a_gzip_bomb_for_a_manifest_is_refused_in_bounded_memory(
    start_sidecar, repo: RepoServer
) -> None:
    # 256 MiB of JSON once decompressed, ~250 KB on the wire.
    repo.fault = Compressed(gzip_of_padded_json(json_entry("bomb"), 256 << 20))
    sidecar = start_sidecar()
    engine = sidecar.call("getInfo")["pid"]  # it reads JSON replies itself
    before = peak_rss(engine)
    error = install_error(sidecar, "bomb")
    grew = peak_rss(engine) - before
    print(f"sidecar peak RSS grew by {grew / 2**20:.1f} MiB reading the bomb")
    assert error.code == REPOSITORY_UNAVAILABLE, error.message
    assert "larger than" in error.message
    assert grew < 48 << 20, grew  # the 16 MiB bound and change; unbounded it was 300 MiB+
    manifest_requests = [r for r in repo.requests if r[1].startswith("/api/")]
    assert manifest_requests
    assert all(r[2].get("Accept-Encoding") == "identity" for r in manifest_requests)


def json_entry(model_id: str) -> Any:
    return json.loads(manifest_text(model_id, []))


# --- 12. nesting ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """One repository and one sidecar for many hostile examples."""
    repo = RepoServer().start()
    sidecar = Sidecar(tmp_path_factory.mktemp("nested") / "home", [repo.url]).start()
    yield repo, sidecar
    sidecar.cleanup()
    repo.stop()


PLACES = ["extra", "whole manifest", "catalog entry", "requires"]


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(depth=st.integers(65, 300_000), place=st.sampled_from(PLACES))
@example(depth=100_000, place="extra")
@example(depth=100_000, place="whole manifest")
@example(depth=5_000, place="catalog entry")
@example(depth=2_000, place="requires")
def test_a_deeply_nested_reply_is_a_typed_error_and_the_daemon_carries_on(
    shared, depth: int, place: str
) -> None:
    repo, sidecar = shared
    model_id = f"nested-{os.urandom(4).hex()}"
    if place == "extra":
        body = manifest_text(model_id, [], extra=nested(depth))
        repo.fault = RawJson(body.encode(), match=f"/api/models/{model_id}")
    elif place == "whole manifest":
        repo.fault = RawJson(nested(depth).encode(), match=f"/api/models/{model_id}")
    elif place == "requires":  # the model is fine; what it requires is not
        other = f"{model_id}-dep"
        repo.raw_entries[model_id] = json_entry_requiring(model_id, other)
        repo.fault = RawJson(nested(depth).encode(), match=f"/api/models/{other}")
    else:  # the catalog lists it; the repository is down for its own manifest
        catalog = "[" + manifest_text(model_id, [], extra=nested(depth)) + "]"
        repo.fault = RawJson(catalog.encode(), match=lambda path: path == "/api/models")
        listed = sidecar.call("listModels", {"refresh": True}, timeout=30)
        assert listed["stale"] is True  # the reply was refused whole
    error = install_error(sidecar, model_id)
    assert error.code in (REPOSITORY_UNAVAILABLE, UNSAFE_MANIFEST, 1002), error.message
    assert "nests deeper than 64" in error.message or error.code == 1002, error.message
    repo.fault = None
    assert sidecar.process and sidecar.process.poll() is None
    assert sidecar.call("getInfo")["version"]


def json_entry_requiring(model_id: str, other: str) -> Any:
    return json.loads(manifest_text(model_id, [other]))


# --- the scheduler's ranking ------------------------------------------------------------

RANKING = "/api/model-usage/ranking"
SCHEDULER_UNAVAILABLE = 1010


@linux_only
@pytest.mark.parametrize(
    "fault",
    [
        lambda: Compressed(gzip_of_padded_json([], 256 << 20), match=RANKING),
        lambda: RawJson(nested(100_000).encode(), match=RANKING),
        lambda: RawJson(b" " * (8 << 20) + b"[]", match=RANKING),
        lambda: Drip(b"[" + b" " * 1000 + b"]", interval=0.2, match=RANKING),
    ],
    ids=["gzip-bomb", "nested", "too-large", "dripped"],
)
def test_a_hostile_scheduler_is_scheduler_unavailable_in_bounded_memory(
    start_sidecar, repo: RepoServer, fault
) -> None:
    repo.fault = hostile = fault()
    sidecar = start_sidecar(args=["--scheduler", repo.url])
    try:
        engine = sidecar.call("getInfo")["pid"]  # it reads JSON replies itself
        before = peak_rss(engine)
        with pytest.raises(RpcError) as raised:
            sidecar.call("ranking", {"refresh": True}, timeout=30)
        grew = peak_rss(engine) - before
    finally:
        hostile.release()
    assert raised.value.code == SCHEDULER_UNAVAILABLE, raised.value.message
    assert grew < 48 << 20, grew
    asked = [r for r in repo.requests if r[1] == RANKING]
    assert asked and all(r[2].get("Accept-Encoding") == "identity" for r in asked)
