"""Offline mode over real pipes against the reference server: with --offline (or
MODEL_MANAGER_OFFLINE=1) the sidecar opens no connection at all (counted at a TCP proxy
in front of the server), answers listModels and ranking from its caches with
``stale: true`` and the time they were fetched, keeps installed models available, and
refuses an install that needs a download at once with ``reason: offline``."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from model_repo.background import BackgroundServer
from tests.support.repo_helpers import free_port, publish_files, run_cli
from tests.support.sidecar_proc import RpcError, Sidecar
from tests.support.tcpproxy import TcpProxy

WHISPER = {"model.bin": os.urandom(300_000), "config.json": b'{"layers": 12}'}
ALIGN = {"align.bin": os.urandom(100_000)}


class CountingProxy(TcpProxy):
    """Counts every connection a client opens, whatever it sends on it."""

    def __init__(self, upstream_port: int) -> None:
        self.connections = 0
        self.count_lock = threading.Lock()
        super().__init__(upstream_port)

    def _serve(self, client):  # type: ignore[no-untyped-def]
        with self.count_lock:
            self.connections += 1
        super()._serve(client)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[CountingProxy]:
    storage = tmp_path / "storage"
    publish_files(storage, "align-zh", "1.0.0", ALIGN, task="alignment")
    publish_files(storage, "whisper-small-zh", "1.0.0", WHISPER, task="asr")
    with BackgroundServer(storage) as server:
        port = int(server.url.rsplit(":", 1)[1])
        proxy = CountingProxy(port)
        yield proxy
        proxy.stop()


def _sidecar(home: Path, url: str, args: list[str] | None = None, **env: str) -> Sidecar:
    return Sidecar(home, url, args=args, env={"MODEL_MANAGER_SCHEDULER": url, **env}).start()


def _online_first(home: Path, proxy: CountingProxy) -> None:
    """Install one model and fill the caches (catalog, ranking) while online."""
    sidecar = _sidecar(home, proxy.url)
    try:
        assert sidecar.install_and_wait("align-zh")["state"] == "ready"
        assert not sidecar.call("listModels", {"refresh": True})["stale"]
        assert not sidecar.call("ranking", {"refresh": True})["stale"]
    finally:
        sidecar.stop()
        sidecar.cleanup()
    assert proxy.connections > 0  # the counter sees the sidecar's connections


@pytest.mark.parametrize("how", ["flag", "env"])
def test_offline_opens_no_connection_and_answers_from_caches(
    proxy: CountingProxy, tmp_path: Path, how: str
) -> None:
    home = tmp_path / "home"
    _online_first(home, proxy)
    proxy.connections = 0
    args, env = (["--offline"], {}) if how == "flag" else ([], {"MODEL_MANAGER_OFFLINE": "1"})
    sidecar = _sidecar(home, proxy.url, args, **env)
    try:
        listed = sidecar.call("listModels", {"refresh": True})
        assert listed["stale"] is True and listed["offline"] is True
        assert datetime.fromisoformat(listed["fetchedAt"]).tzinfo is not None
        assert {m["id"] for m in listed["models"]} == {"align-zh", "whisper-small-zh"}
        ranking = sidecar.call("ranking", {"refresh": True})
        assert ranking["stale"] is True and ranking["fetchedAt"]

        started = time.monotonic()
        with pytest.raises(RpcError) as refused:
            sidecar.call("install", {"modelId": "whisper-small-zh"})
        assert time.monotonic() - started < 5  # at once, not after retries
        assert refused.value.code == 1004
        assert refused.value.data["code"] == "REPOSITORY_UNAVAILABLE"
        assert refused.value.data["reason"] == "offline"
        assert "whisper-small-zh" in refused.value.message

        installed = sidecar.call("install", {"modelId": "align-zh"})
        assert (installed["taskId"], installed["state"]) == (None, "ready")
        assert sidecar.call("getModelPath", {"modelId": "align-zh"})["path"]
        assert sidecar.call("verify", {"modelId": "align-zh"})["ok"]
        time.sleep(1.5)  # past the transfer worker's warm-up: it never starts offline
        assert sidecar.call("getInfo")["workerPid"] is None
    finally:
        assert sidecar.stop() == 0
        sidecar.cleanup()
    assert proxy.connections == 0


def test_no_repository_answering_is_offline_by_itself(proxy: CountingProxy, tmp_path: Path):
    home = tmp_path / "home"
    _online_first(home, proxy)
    sidecar = _sidecar(home, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        listed = sidecar.call("listModels", {"refresh": True})
        assert listed["stale"] is True and listed["offline"] is False
        assert listed["fetchedAt"]
        assert {m["id"] for m in listed["models"]} == {"align-zh", "whisper-small-zh"}
        # The ranking cached was another scheduler's (the URL changed): never shown here.
        with pytest.raises(RpcError) as refused:
            sidecar.call("ranking", {"refresh": True})
        assert refused.value.code == 1010
    finally:
        sidecar.stop()
        sidecar.cleanup()


def test_cli_offline_list_shows_when_the_catalog_was_fetched(
    proxy: CountingProxy, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _online_first(home, proxy)
    proxy.connections = 0
    listed = run_cli("--offline", "list", home=home, repository=proxy.url)
    assert listed.returncode == 0, listed.stderr
    assert "offline" in listed.stdout and "fetched" in listed.stdout
    refused = run_cli("--offline", "install", "whisper-small-zh", home=home, repository=proxy.url)
    assert refused.returncode == 1
    assert refused.stderr.startswith("REPOSITORY_UNAVAILABLE:")
    assert proxy.connections == 0
