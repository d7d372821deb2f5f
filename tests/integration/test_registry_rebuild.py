"""registry.json lost or damaged after a crash: the registry rebuilt from the model
folders keeps what users and verify decided after the install, pins and damaged
marks. The real sidecar over real pipes against the loopback repository."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError, Sidecar

KB = 1000


def deleted(path: Path) -> None:
    path.unlink()


def garbage(path: Path) -> None:
    path.write_bytes(b'{"schemaVersion": 1, "models": {"a": ')  # torn mid-write


LOSSES: dict[str, Callable[[Path], None]] = {"deleted": deleted, "garbage": garbage}


def crash_and_lose_registry(sidecar: Sidecar, home: Path, loss: str) -> None:
    sidecar.kill()  # no clean shutdown: nothing gets a last chance to write
    LOSSES[loss](home / "registry.json")


def pins(sidecar: Sidecar) -> dict[str, bool]:
    usage = sidecar.call("diskUsage")
    return {f"{v['modelId']}@{v['version']}": v["pinned"] for v in usage["versions"]}


def evicted(sidecar: Sidecar) -> list[str]:
    return [
        n["params"]["modelId"]
        for n in sidecar.notifications
        if n["method"] == "models.changed" and n["params"].get("reason") == "evicted"
    ]


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_a_pin_survives_a_rebuilt_registry_and_the_quota_spares_it(
    start_sidecar, repo: RepoServer, home: Path, loss: str
):
    for model_id in ("a", "b", "c", "d"):
        repo.add(model_id, "1.0.0", {"weights.bin": os.urandom(300 * KB)})
    quota = ["--max-store-bytes", str(950 * KB)]
    sidecar = start_sidecar(args=quota)
    for model_id in ("a", "b", "c"):  # a is the least recently used, then b, then c
        assert sidecar.install_and_wait(model_id)["state"] == "ready"
    sidecar.call("pin", {"modelId": "a"})
    sidecar.call("pin", {"modelId": "b"})
    assert sidecar.call("unpin", {"modelId": "b"})["pinned"] is False
    assert pins(sidecar) == {"a@1.0.0": True, "b@1.0.0": False, "c@1.0.0": False}
    crash_and_lose_registry(sidecar, home, loss)

    again = start_sidecar(args=quota)
    assert pins(again) == {"a@1.0.0": True, "b@1.0.0": False, "c@1.0.0": False}
    # d needs room for one more: the oldest, a, is pinned, so b goes.
    assert again.install_and_wait("d")["state"] == "ready"
    assert evicted(again) == ["b"]
    assert sorted(p.name for p in (home / "models").iterdir()) == ["a", "c", "d"]
    assert again.call("getModelPath", {"modelId": "a"})["version"] == "1.0.0"


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_a_damaged_mark_survives_a_rebuilt_registry_until_repaired(
    start_sidecar, repo: RepoServer, home: Path, loss: str
):
    files = {"a.bin": os.urandom(100 * KB), "b.bin": os.urandom(100 * KB)}
    repo.add("m", "1.0.0", files)
    sidecar = start_sidecar()
    assert sidecar.install_and_wait("m")["state"] == "ready"
    sidecar.call("pin", {"modelId": "m"})
    folder = home / "models/m/1.0.0"
    (folder / "b.bin").write_bytes(b"\0" * (100 * KB))  # same size: only verify can tell
    assert sidecar.call("verify", {"modelId": "m"})["ok"] is False
    crash_and_lose_registry(sidecar, home, loss)

    sidecar = start_sidecar()
    with pytest.raises(RpcError) as refused:
        sidecar.call("getModelPath", {"modelId": "m"})
    assert refused.value.data["reason"] == "damaged"
    (listed,) = [m for m in sidecar.call("listModels", {})["models"] if m["id"] == "m"]
    assert [v["state"] for v in listed["installed"]] == ["damaged"]
    assert pins(sidecar) == {"m@1.0.0": True}

    # The repair clears the mark, for a rebuilt registry too, and keeps the pin.
    assert sidecar.install_and_wait("m", repair=True)["state"] == "ready"
    crash_and_lose_registry(sidecar, home, loss)
    sidecar = start_sidecar()
    assert sidecar.call("getModelPath", {"modelId": "m"})["path"] == str(folder)
    assert pins(sidecar) == {"m@1.0.0": True}
    assert sidecar.call("verify", {"modelId": "m"})["ok"] is True
