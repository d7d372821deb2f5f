"""What one JSON-RPC line may cost, over real pipes: at most 256 calls in a batch, a
bounded count of JSON values before the line is parsed, and a bounded size for one
batch's answers. Each refusal is an answer; the daemon carries on."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sidecar.rpc.server import MAX_BATCH, MAX_BATCH_ANSWER_BYTES, MAX_LINE_VALUES
from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import Sidecar

INVALID_REQUEST, SERVER_ERROR = -32600, -32000


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    repo = RepoServer().start()
    sidecar = Sidecar(tmp_path_factory.mktemp("rpc-limits") / "home", [repo.url]).start()
    sidecar.call("getInfo")
    yield repo, sidecar
    sidecar.cleanup()
    repo.stop()
    assert not sidecar.bad_lines


def batch(prefix: str, count: int, method: str = "getInfo") -> list[dict[str, Any]]:
    return [{"jsonrpc": "2.0", "id": f"{prefix}-{i}", "method": method} for i in range(count)]


def refusal(sidecar: Sidecar, since: int, code: int = INVALID_REQUEST) -> dict[str, Any]:
    """The first id-less error answered after ``since`` null-id answers."""
    found = sidecar.wait_for(lambda: sidecar.null_id_responses[since:], what="a refusal")
    assert found[0]["error"]["code"] == code, found[0]
    return found[0]["error"]


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(count=st.integers(1, 4 * MAX_BATCH))
@example(count=MAX_BATCH)
@example(count=MAX_BATCH + 1)
@example(count=1)
def test_a_batch_is_answered_whole_up_to_the_limit_and_refused_past_it(shared, count: int) -> None:
    _, sidecar = shared
    prefix = f"b{count}-{len(sidecar.lines)}"
    since = len(sidecar.null_id_responses)
    sidecar.send(batch(prefix, count))
    if count <= MAX_BATCH:
        ids = [f"{prefix}-{i}" for i in range(count)]
        sidecar.wait_for(lambda: all(i in sidecar.responses for i in ids), what="the answers")
        assert all("result" in sidecar.responses[i] for i in ids)
    else:
        error = refusal(sidecar, since)
        assert f"a batch of {count} calls; at most {MAX_BATCH}" in error["data"]
        assert not any(str(key).startswith(f"{prefix}-") for key in sidecar.responses)
    assert sidecar.call("getInfo")["version"]


@pytest.mark.parametrize(
    "line",
    [
        json.dumps(batch("huge", 100_000)),  # the line: ~1 GB before
        "[" + "{}," * MAX_LINE_VALUES + "{}]",
        '{"jsonrpc":"2.0","id":1,"method":"getModelPath","params":'
        + "[" * (MAX_LINE_VALUES + 1)
        + "]" * (MAX_LINE_VALUES + 1)
        + "}",
        '{"jsonrpc":"2.0","id":1,"method":"getModelPath","params":{"modelId":"m","x":['
        + "{}," * 4_000_000
        + "{}]}}",  # 12 MB naming getModelPath: no method is parsed past the bound
    ],
    ids=["100k-calls", "empty-objects", "model-path-nested", "model-path-wide"],
)
def test_a_line_of_too_many_values_is_refused_before_it_is_parsed(shared, line: str) -> None:
    _, sidecar = shared
    info = sidecar.call("getInfo")
    before = {info["pid"]: peak_rss(info["pid"])}
    since = len(sidecar.null_id_responses)
    sidecar.send_raw(line.encode() + b"\n")
    error = refusal(sidecar, since)
    assert "JSON values" in error["data"]
    for pid, peak in before.items():
        grew = peak_rss(pid) - peak
        print(f"peak RSS of {pid} grew by {grew / 2**20:.1f} MiB for a {len(line)} byte line")
        assert grew < 64 << 20, (pid, grew)
    assert sidecar.call("getInfo")["version"]


def test_the_answers_to_one_batch_are_bounded(shared) -> None:
    """256 listModels over a large catalog would answer ~25 MB in one line: answers past
    the budget become small errors with their ids, and every call is still answered."""
    repo, sidecar = shared
    for n in range(400):
        repo.add(f"catalog-model-{n:03d}", "1.0.0", {"weights.bin": b"w"})
    one = len(json.dumps(sidecar.call("listModels", {"refresh": True}, timeout=60)))
    assert MAX_BATCH * one > 1.3 * MAX_BATCH_ANSWER_BYTES, one  # the case is real
    start = len(sidecar.raw_lines)
    prefix = f"lm-{start}"
    sidecar.send(batch(prefix, MAX_BATCH, "listModels"))
    ids = [f"{prefix}-{i}" for i in range(MAX_BATCH)]
    sidecar.wait_for(lambda: all(i in sidecar.responses for i in ids), 120, "the answers")
    answers = [sidecar.responses[i] for i in ids]
    dropped = [a for a in answers if "error" in a]
    assert dropped and all(a["error"]["code"] == SERVER_ERROR for a in dropped)
    assert "send it on its own" in dropped[0]["error"]["data"]
    assert len(answers) - len(dropped) >= MAX_BATCH_ANSWER_BYTES // one - 1
    line = next(raw for raw in sidecar.raw_lines[start:] if raw.startswith(b"["))
    assert len(line) <= MAX_BATCH_ANSWER_BYTES + 200 * MAX_BATCH, len(line)


linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) * 1024
