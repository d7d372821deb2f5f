"""The front process answers getModelPath without its engine, never from state older
than what the app has read, dies with the engine's code and takes the engine with it."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError, Sidecar

MODEL = "whisper-small"


@pytest.fixture(autouse=True)
def published(repo: RepoServer) -> None:
    repo.add(MODEL, "1.0.0", {"model.bin": os.urandom(256 * 1024), "vocab.txt": b"a\nb\n"})


def unavailable_reason(sidecar: Sidecar, params: dict[str, str]) -> str:
    with pytest.raises(RpcError) as caught:
        sidecar.call("getModelPath", params, timeout=5)
    assert caught.value.code == 1001
    return str(caught.value.data["reason"])


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP")
def test_get_model_path_is_answered_while_the_engine_is_frozen(
    start_sidecar: Callable[..., Sidecar],
) -> None:
    sidecar = start_sidecar()
    assert sidecar.install_and_wait(MODEL)["state"] == "ready"
    engine = sidecar.call("getInfo")["enginePid"]
    os.kill(engine, signal.SIGSTOP)
    try:
        found = sidecar.call("getModelPath", {"modelId": MODEL}, timeout=5)
        assert found["modelId"] == MODEL and Path(found["path"]).is_dir()
        assert unavailable_reason(sidecar, {"modelId": "nothing-like-it"}) == "not_installed"
        request = {"jsonrpc": "2.0", "id": "info", "method": "getInfo"}
        sidecar.send(request)  # the engine's to answer: it waits
        time.sleep(0.5)
        assert "info" not in sidecar.responses
    finally:
        os.kill(engine, signal.SIGCONT)
    assert sidecar.wait_response("info")["result"]["enginePid"] == engine


def test_what_the_app_has_read_the_front_has_too(
    start_sidecar: Callable[..., Sidecar],
) -> None:
    """No waiting and no retry: the answer right after the news is already the new one."""
    sidecar = start_sidecar()
    task = sidecar.call("install", {"modelId": MODEL})["taskId"]
    sidecar.wait_for(
        lambda: any(
            n["method"] == "task.state" and n["params"]["state"] == "ready"
            for n in sidecar.notifications
            if n["params"].get("taskId") == task
        ),
        what="the ready notification",
    )
    assert sidecar.call("getModelPath", {"modelId": MODEL}, timeout=5)["modelId"] == MODEL
    sidecar.call("remove", {"modelId": MODEL})
    assert unavailable_reason(sidecar, {"modelId": MODEL}) == "not_installed"


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_kill_of_the_front_kills_the_engine(start_sidecar: Callable[..., Sidecar]) -> None:
    sidecar = start_sidecar()
    engine = psutil.Process(sidecar.call("getInfo")["enginePid"])
    sidecar.kill()
    engine.wait(5)  # raises TimeoutExpired if it lives on
    # Killed, not shut down: without PR_SET_PDEATHSIG it would see its stdin close and
    # stop cleanly, and a kill -9 test would no longer test a kill.
    assert "sidecar stopped" not in sidecar.stderr()


def test_the_front_ends_with_its_engine(start_sidecar: Callable[..., Sidecar]) -> None:
    sidecar = start_sidecar()
    engine = sidecar.call("getInfo")["enginePid"]
    psutil.Process(engine).kill()
    code = sidecar.wait_exit(10)
    assert code == (1 if sys.platform == "win32" else 128 + signal.SIGKILL)
    assert "engine killed by signal" in sidecar.stderr()
