"""moveStore on a home other processes attach to: once the move is done, a client
started with the old --home (forwarded) or with the new one attaches to the engine that
moved it, a client attached before the move stays attached, and when the owner leaves
it takes the home over at its new place, never the empty old folder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import nullcontext, suppress
from pathlib import Path

import pytest

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import Sidecar
from tests.support.tmpfs import tmpfs

ALIGN = {"align.bin": os.urandom(200_000)}
ATTACH_TIMEOUT = 15.0  # a client that cannot attach waits for the owner forever


@pytest.fixture
def repo() -> Iterator[RepoServer]:
    server = RepoServer().start()
    server.add("align-zh", "1.0.0", ALIGN)
    yield server
    server.stop()


def _start(home: Path, repo: RepoServer, **env: str) -> Sidecar:
    return Sidecar(home, repo.url, env=env).start()


def _info(sidecar: Sidecar) -> tuple[int, str]:
    info = sidecar.call("getInfo", timeout=ATTACH_TIMEOUT)
    return info["pid"], info["home"]


def _lock(home: Path) -> dict[str, object]:
    document: dict[str, object] = json.loads((home / "engine.lock").read_text())
    return document


@pytest.mark.parametrize("where", ["same-volume", "other-drive"])
def test_clients_of_the_old_and_the_new_home_attach_after_a_move(
    repo: RepoServer, tmp_path: Path, where: str
) -> None:
    home = tmp_path / "home"
    started: list[Sidecar] = []

    def start(at: Path) -> Sidecar:
        started.append(_start(at, repo))
        return started[-1]

    with (
        tmpfs(tmp_path / "drive", "16m")
        if where == "other-drive"
        else nullcontext(tmp_path) as base
    ):
        new = base / "lib"
        try:
            app = start(home)
            assert app.install_and_wait("align-zh")["state"] == "ready"
            app_pid = app.call("getInfo")["pid"]
            early = start(home)  # attached before the move, with the old --home
            assert _info(early) == (app_pid, str(home))

            moved = app.call("moveStore", {"to": str(new)}, timeout=60)
            assert moved["home"] == str(new)
            assert _lock(new)["pid"] == app_pid

            forwarded = start(home)  # the app has not stored the new home yet
            assert _info(forwarded) == (app_pid, str(new))
            fresh = start(new)
            assert _info(fresh) == (app_pid, str(new))
            assert _info(early) == (app_pid, str(new))
            path = fresh.call("getModelPath", {"modelId": "align-zh"})["path"]
            assert path == str(new / "models" / "align-zh" / "1.0.0")

            # The owner leaves: the client attached with the old --home takes over the
            # home where it is now.
            for client in (forwarded, fresh):
                assert client.stop() == 0
            assert app.stop() == 0
            assert early.process is not None
            assert _info(early) == (early.process.pid, str(new))
            path = early.call("getModelPath", {"modelId": "align-zh"})["path"]
            assert path == str(new / "models" / "align-zh" / "1.0.0")
            assert early.stop() == 0
        finally:
            for sidecar in started:
                with suppress(Exception):
                    sidecar.stop()
                sidecar.cleanup()
        assert [p.name for p in home.iterdir()] == ["moved-to.json"]
