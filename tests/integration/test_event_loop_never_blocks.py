"""The manager in-process under blockbuster: any blocking call made on the event loop
(file I/O, sleep, socket) fails the test. That is the bug that froze the old server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from blockbuster import blockbuster_ctx

from sidecar.config import Settings
from sidecar.core.manager import Manager
from sidecar.errors import ModelNotAvailable
from sidecar.transfer import jsonreply  # noqa: F401  (imported here, not under the checks)
from sidecar.transfer.client import TransferClient
from sidecar.transfer.http import JsonClient
from sidecar.transfer.network import Network
from sidecar.wire import TaskState
from tests.support.repo_server import RepoServer

FILES = {"model.bin": os.urandom(3_000_000), "conf/config.json": b"{}"}


def test_install_verify_remove_never_block_the_loop(repo: RepoServer, home: Path) -> None:
    repo.add("whisper-small", "1.0.0", FILES, requires=[{"model_id": "align", "version": "1"}])
    repo.add("align", "1", {"a.bin": b"a" * 1000})
    settings = Settings(home=home, repositories=(repo.url,), stall_timeout=5)
    notifications: list[tuple[str, dict[str, Any]]] = []

    async def notify(method: str, params: dict[str, Any]) -> None:
        notifications.append((method, params))

    async def scenario() -> None:
        network = Network(None, None, 16)
        assert network.ssl  # loads CA certificates: before the checks start
        client = JsonClient(settings, network)
        with blockbuster_ctx():
            async with anyio.create_task_group() as group:
                transfer = TransferClient(settings)
                await group.start(transfer.serve)
                manager = Manager(settings, client, network, transfer, notify)
                await group.start(manager.serve)
                with pytest.raises(ModelNotAvailable):
                    manager.library.model_path("whisper-small", None)
                started = await manager.install("whisper-small", None, dependencies=True)
                assert started.task_id is not None
                task = manager.get_task(started.task_id)
                with anyio.fail_after(30):
                    for each in list(manager.tasks.values()):  # the requirement too
                        await each.finished.wait()
                assert task.state == TaskState.READY, task.error
                assert manager.library.model_path("align", None)["version"] == "1"
                assert (await manager.library.verify("whisper-small", None)).ok
                assert (await manager.library.list_models(refresh=True)).models
                await manager.library.remove("align", None)
                group.cancel_scope.cancel()
            await client.aclose()

    anyio.run(scenario)
    assert any(method == "task.progress" for method, _ in notifications)
