"""JSON replies of a hostile repository, read in-process by ``sidecar.transfer.jsonreply`` through
the sidecar's own HTTP client from a real loopback server: nesting, size, compression
and time are bounded for every input, not only the ones the issue names."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sidecar.config import Settings
from sidecar.transfer import jsonreply
from sidecar.transfer.jsonreply import (
    MAX_JSON_DEPTH,
    MAX_JSON_VALUES,
    ReplyRefused,
    get_json,
    make_client,
)
from sidecar.transfer.network import Network
from tests.support.faults import Fault
from tests.support.hostile_json import Compressed, Drip, RawJson, gzip_of_padded_json, nested
from tests.support.repo_server import RepoServer

LIMIT = 1 << 20  # the bound these tests read under: small, so the cases stay quick
HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def read(repo: RepoServer, fault: Fault, *, max_bytes: int = LIMIT, deadline: float = 10) -> Any:
    """What get_json makes of ``fault``'s reply to /api/models."""
    repo.fault = fault
    settings = Settings(home=Path("/nonexistent"), repositories=(repo.url,), stall_timeout=5)

    async def scenario() -> Any:
        async with make_client(settings, Network(None, None, 16)) as client:
            with anyio.fail_after(60):  # a hang is a failure, not a wait
                return await get_json(
                    client,
                    f"{repo.url}/api/models",
                    headers={},
                    max_bytes=max_bytes,
                    deadline=deadline,
                )

    try:
        return anyio.run(scenario)
    finally:
        fault.release()


@HYPOTHESIS
@given(depth=st.integers(1, 200_000), inner=st.sampled_from([0, "x", [], {}]))
@example(depth=MAX_JSON_DEPTH, inner=0)
@example(depth=MAX_JSON_DEPTH + 1, inner=0)
@example(depth=MAX_JSON_DEPTH - 1, inner=[])
@example(depth=MAX_JSON_DEPTH, inner=[])
@example(depth=100_000, inner=0)
def test_nesting_past_the_limit_is_refused_and_below_it_parsed(
    repo: RepoServer, depth: int, inner: Any
) -> None:
    text = nested(depth, inner).encode()
    total_depth = depth + (1 if isinstance(inner, (list, dict)) else 0)
    if total_depth > MAX_JSON_DEPTH:
        with pytest.raises(ReplyRefused, match="nests deeper than"):
            read(repo, RawJson(text))
    else:
        assert read(repo, RawJson(text)) == json.loads(text)


@HYPOTHESIS
@given(size=st.integers(0, 3 * LIMIT), encoding=st.sampled_from(["gzip", "x-gzip", "deflate"]))
@example(size=LIMIT - 2, encoding="gzip")  # with the "[]" exactly at the bound
@example(size=LIMIT - 1, encoding="gzip")
def test_a_compressed_reply_is_read_up_to_the_bound_and_never_past_it(
    repo: RepoServer, size: int, encoding: str
) -> None:
    if encoding == "deflate":
        body = zlib.compress(b" " * size + b"[]", 9)
    else:
        body = gzip_of_padded_json([], size)
    if size + 2 <= LIMIT:
        assert read(repo, Compressed(body, encoding=encoding)) == []
    else:
        with pytest.raises(ReplyRefused, match="larger than"):
            read(repo, Compressed(body, encoding=encoding))


def test_a_gzip_bomb_costs_the_bound_not_its_expanded_size(repo: RepoServer) -> None:
    bomb = gzip_of_padded_json([], 256 << 20)  # 256 MiB of JSON in ~250 KB
    tracemalloc.start()
    try:
        with pytest.raises(ReplyRefused, match="larger than"):
            read(repo, Compressed(bomb))
        _, peak = tracemalloc.get_traced_memory()
        print(f"peak traced memory reading a 256 MiB gzip bomb: {peak / 2**20:.1f} MiB")
    finally:
        tracemalloc.stop()
    # The body up to its bound, one step of the inflater, and the bytearray's slack.
    assert peak < LIMIT + 3 * jsonreply.INFLATE_STEP, peak


def test_identity_is_asked_for(repo: RepoServer) -> None:
    assert read(repo, RawJson(b"[1]")) == [1]
    assert repo.requests[-1][2].get("Accept-Encoding") == "identity"


@pytest.mark.parametrize(
    ("body", "encoding", "problem"),
    [
        (b"[]", "br", "compressed as"),
        (gzip.compress(gzip.compress(b"[]")), "gzip, gzip", "compressed as"),
        (gzip.compress(b"[1]")[:-12], "gzip", "ends early"),
        (gzip.compress(b"[1]") + b"junk", "gzip", "after the end"),
        (b"not gzip at all", "gzip", "damaged"),
    ],
)
def test_odd_compression_is_refused(
    repo: RepoServer, body: bytes, encoding: str, problem: str
) -> None:
    with pytest.raises(ReplyRefused, match=problem):
        read(repo, Compressed(body, encoding=encoding))


@HYPOTHESIS
@given(size=st.integers(LIMIT + 1, 4 * LIMIT))
def test_a_plain_reply_past_the_bound_is_refused(repo: RepoServer, size: int) -> None:
    with pytest.raises(ReplyRefused, match=r"larger than|bytes; at most"):
        read(repo, RawJson(b" " * size + b"[]"))


@pytest.mark.parametrize("count", [MAX_JSON_VALUES // 2, MAX_JSON_VALUES + 1])
def test_too_many_values_are_refused_before_they_become_objects(
    repo: RepoServer, count: int
) -> None:
    body = b"[" + b"[]," * (count - 2) + b"[]]"  # count - 1 lists in one
    if count <= MAX_JSON_VALUES:
        assert len(read(repo, RawJson(body), max_bytes=len(body))) == count - 1
    else:
        with pytest.raises(ReplyRefused, match="JSON values"):
            read(repo, RawJson(body), max_bytes=len(body))


def test_not_json_is_refused(repo: RepoServer) -> None:
    with pytest.raises(ReplyRefused, match="not JSON"):
        read(repo, RawJson(b"<html>proxy error</html>"))


@pytest.mark.parametrize("interval", [0.05, 0.3])
def test_a_dripped_reply_ends_at_the_deadline(repo: RepoServer, interval: float) -> None:
    # The stall timeout (5 s) never fires: a byte comes every ``interval`` seconds.
    with pytest.raises(ReplyRefused, match="no complete reply within 1 s"):
        read(repo, Drip(b"[" + b" " * 10_000 + b"]", interval=interval), deadline=1)
