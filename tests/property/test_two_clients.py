"""Issue 15: two clients of one home, in random interleavings of install, pause, resume,
cancel and restart (a client's sidecar stopped and started again, which may hand the
home to the other): the bytesDone each client sees never decreases within a task, and
both end up seeing the same final state."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError, Sidecar

DATA = os.urandom(2_000_000)
ACTIONS = ("install", "pause", "resume", "cancel", "restart")
FINISHED = {"ready", "failed", "cancelled"}


@pytest.fixture(scope="module")
def served() -> Iterator[RepoServer]:
    server = RepoServer().start()
    server.add("m", "1", {"w.bin": DATA})
    yield server
    server.stop()


def current_task(client: Sidecar) -> dict | None:
    tasks = [t for t in client.call("listTasks")["tasks"] if t["modelId"] == "m"]
    unfinished = [t for t in tasks if t["state"] not in FINISHED]
    return (unfinished or tasks or [None])[-1]


def act(client: Sidecar, action: str) -> None:
    if action == "install":
        client.call("install", {"modelId": "m"})
        return
    task = current_task(client)
    if task is None:
        return
    try:
        client.call(action, {"taskId": task["taskId"]})
    except RpcError as exc:  # e.g. pause a task that just finished: a typed refusal
        assert exc.data["code"] in {"INVALID_STATE", "TASK_NOT_FOUND"}, exc.data


def progress_by_task(client: Sidecar) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for note in client.notifications:
        if note["method"] in ("task.progress", "task.state"):
            seen.setdefault(note["params"]["taskId"], []).append(note["params"]["bytesDone"])
    return seen


def final_view(client: Sidecar) -> tuple[object, ...]:
    try:
        path = client.call("getModelPath", {"modelId": "m"})["path"]
    except RpcError as exc:
        path = exc.data["code"]
    states = sorted((t["taskId"], t["state"]) for t in client.call("listTasks")["tasks"])
    return path, states


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(st.tuples(st.integers(0, 1), st.sampled_from(ACTIONS)), max_size=6))
def test_two_clients_agree_and_progress_never_goes_back(
    served: RepoServer, steps: list[tuple[int, str]]
) -> None:
    served.bytes_per_second = 1_000_000
    folder = Path(tempfile.mkdtemp(prefix="two-clients-"))
    home = folder / "home"
    everyone: list[Sidecar] = []

    def start() -> Sidecar:
        sidecar = Sidecar(home, [served.url]).start()
        everyone.append(sidecar)
        return sidecar

    try:
        clients = [start(), start()]
        clients[0].call("getInfo")
        clients[1].call("getInfo")
        for who, action in [(0, "install"), *steps]:
            if action == "restart":
                clients[who].stop()
                clients[who] = start()
            else:
                act(clients[who], action)
        # Let whatever is unfinished finish, then compare what both see.
        served.bytes_per_second = None
        task = current_task(clients[0])
        if task is not None:  # a pause asked for last may still be under way
            task = clients[0].wait_task(task["taskId"], FINISHED | {"paused"}, timeout=30)
        if task is not None and task["state"] == "paused":
            clients[0].call("resume", {"taskId": task["taskId"]})
        if task is not None:
            for client in clients:
                client.wait_task(task["taskId"], FINISHED, timeout=30)
        assert final_view(clients[0]) == final_view(clients[1])
        for sidecar in everyone:
            for task_id, done in progress_by_task(sidecar).items():
                backwards = [(a, b) for a, b in itertools.pairwise(done) if b < a]
                assert not backwards, (task_id, done)
    finally:
        for sidecar in everyone:
            sidecar.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
