"""setLimits' bandwidth cap through the real sidecar: lifting a tiny cap frees the
download that sleeps under it, and a cap out of range is INVALID_PARAMS at once, not
an INTERNAL_ERROR in every later download."""

from __future__ import annotations

import os

import pytest

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError

DATA = os.urandom(3_000_000)
LARGE = os.urandom(40 * 1024 * 1024)  # past 32 MiB: segments, read by worker threads


@pytest.mark.parametrize(("tiny", "then"), [(1, 0), (1, 100_000_000), (7, 0)])
@pytest.mark.parametrize("data", [DATA, LARGE], ids=["whole", "segmented"])
def test_a_download_under_a_tiny_cap_finishes_once_the_cap_changes(
    start_sidecar, repo: RepoServer, tiny: int, then: int, data: bytes
) -> None:
    repo.add("capped", "1", {"w.bin": data})
    sidecar = start_sidecar()
    assert sidecar.call("setLimits", {"maxBytesPerSecond": tiny})["maxBytesPerSecond"] == tiny
    task_id = sidecar.call("install", {"modelId": "capped"})["taskId"]
    # Asleep under the cap: at 1-7 B/s the first chunk alone would take hours.
    sidecar.wait_for(lambda: repo.storage_bytes("capped") > 0, what="the download to start")
    assert sidecar.call("getTask", {"taskId": task_id})["state"] == "downloading"
    assert sidecar.call("setLimits", {"maxBytesPerSecond": then})["maxBytesPerSecond"] == then
    task = sidecar.wait_task(task_id, {"ready", "failed"}, timeout=60)
    assert task["state"] == "ready", task


@pytest.mark.parametrize(
    "rate", ["1" + "0" * 400, str(2**40 + 1), "1" + "0" * 13, "-1", "1.5", "true"]
)
def test_a_cap_out_of_range_is_invalid_params_and_later_downloads_work(
    start_sidecar, repo: RepoServer, rate: str
) -> None:
    repo.add("fine", "1", {"w.bin": DATA})
    sidecar = start_sidecar()
    sidecar.send_raw(
        b'{"jsonrpc":"2.0","id":"big","method":"setLimits","params":{"maxBytesPerSecond":'
        + rate.encode()
        + b"}}\n"
    )
    answer = sidecar.wait_response("big")
    assert answer["error"]["code"] == -32602, answer
    assert sidecar.call("setLimits", {})["maxBytesPerSecond"] == 0  # unchanged: no cap
    assert sidecar.install_and_wait("fine")["state"] == "ready"


def test_the_largest_cap_is_accepted(start_sidecar, repo: RepoServer) -> None:
    repo.add("fine", "1", {"w.bin": DATA})
    sidecar = start_sidecar()
    assert sidecar.call("setLimits", {"maxBytesPerSecond": 2**40})["maxBytesPerSecond"] == 2**40
    assert sidecar.install_and_wait("fine")["state"] == "ready"


def test_a_cap_out_of_range_on_the_command_line_is_a_usage_error(
    start_sidecar, repo: RepoServer
) -> None:
    sidecar = start_sidecar(args=["--max-bytes-per-second", "1" + "0" * 400])
    # Started by a program: every request is answered with the reason, then exit 2.
    with pytest.raises(RpcError) as refused:
        sidecar.call("getInfo")
    assert refused.value.data["code"] == "INVALID_OPTION"
    assert "--max-bytes-per-second" in refused.value.message
    sidecar.close_stdin()
    assert sidecar.wait_exit() == 2
    assert "--max-bytes-per-second" in sidecar.stderr()
