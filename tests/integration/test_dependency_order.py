"""Dependencies are fetched before or alongside the model that needs them, never queued
behind it (issue 15, item 6): the real sidecar against a loopback repository."""

from __future__ import annotations

import os

from tests.support.repo_server import RepoServer

ALIGN = {"align.bin": os.urandom(400_000)}
WHISPER = {"model.bin": os.urandom(400_000)}


def publish(repo: RepoServer) -> None:
    repo.add("align", "1.0.0", ALIGN)
    repo.add("whisper", "1.0.0", WHISPER, requires=[{"model_id": "align", "version": "1.0.0"}])


def test_with_one_slot_the_dependency_goes_first(start_sidecar, repo: RepoServer):
    publish(repo)
    sidecar = start_sidecar(args=["--max-concurrent-tasks", "1"])
    assert sidecar.install_and_wait("whisper")["state"] == "ready"
    models = [path.split("/")[3] for _, path, _ in repo.file_requests()]
    assert models == ["align", "whisper"], models


def test_the_dependency_never_waits_for_the_model(start_sidecar, repo: RepoServer):
    publish(repo)
    repo.bytes_per_second = 1_000_000  # long enough to be seen running together
    sidecar = start_sidecar()
    assert sidecar.install_and_wait("whisper")["state"] == "ready"
    tasks = {t["modelId"]: t for t in sidecar.call("listTasks")["tasks"]}
    align = sidecar.wait_task(tasks["align"]["taskId"], {"ready", "failed", "cancelled"})
    assert align["state"] == "ready"
    waits = [
        n["params"].get("waitingFor") or ""
        for n in sidecar.notifications
        if n["method"] == "task.state" and n["params"]["modelId"] == "align"
    ]
    assert not any("whisper" in w for w in waits), waits
    # Both were downloading at once: the dependency ran alongside the model.
    assert repo.max_in_flight == 2
