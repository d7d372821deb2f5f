"""Random sequences of install / remove / pin / lease / prune / quota changes (and
crash leftovers in temp/) against a real sidecar: after every step the bytes of the
store on disk equal what diskUsage reports, the registry matches the model folders,
and a pinned or leased version is never taken by prune or the quota."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError, Sidecar
from tests.support.store_usage import store_bytes_on_disk

KB = 1000
SHARED = os.urandom(40 * KB)
CATALOG = {
    ("m1", "1.0.0"): {"shared.bin": SHARED, "own.bin": os.urandom(60 * KB)},
    ("m1", "2.0.0"): {"shared.bin": SHARED, "own.bin": os.urandom(80 * KB)},
    ("m2", "1.0.0"): {"w.bin": os.urandom(100 * KB)},
    ("m3", "1.0.0"): {"w.bin": os.urandom(70 * KB), "shared.bin": SHARED},
}
REFS = sorted(CATALOG)

ref = st.sampled_from(REFS)
operation = st.one_of(
    st.tuples(st.just("install"), ref),
    st.tuples(st.just("remove"), ref),
    st.tuples(st.just("pin"), ref),
    st.tuples(st.just("unpin"), ref),
    st.tuples(st.just("lease"), ref),
    st.tuples(st.just("release"), st.just(None)),
    st.tuples(st.just("prune"), st.booleans()),
    st.tuples(st.just("quota"), st.sampled_from([0, 150 * KB, 260 * KB, 400 * KB])),
    st.tuples(st.just("leftover"), st.integers(1, 30 * KB)),
)


@pytest.fixture(scope="module")
def repo() -> Iterator[RepoServer]:
    server = RepoServer().start()
    for (model_id, version), files in CATALOG.items():
        server.add(model_id, version, files)
    yield server
    server.stop()


def folders(home: Path) -> set[tuple[str, str]]:
    models = home / "models"
    return {(m.name, v.name) for m in models.iterdir() for v in m.iterdir()}


def registered(home: Path) -> set[tuple[str, str]]:
    document = json.loads((home / "registry.json").read_text())
    return {(m, v) for m, model in document["models"].items() for v in model["versions"]}


class Run:
    def __init__(self, sidecar: Sidecar, home: Path) -> None:
        self.sidecar = sidecar
        self.home = home
        self.leases: list[tuple[str, tuple[str, str]]] = []
        self.pinned: set[tuple[str, str]] = set()
        self.quota = 0
        self.leftovers = 0

    def step(self, kind: str, arg: Any) -> None:
        call = self.sidecar.call
        try:
            if kind == "install":
                task = self.sidecar.install_and_wait(arg[0], version=arg[1])
                assert task["state"] == "ready", task
                if self.quota and task["taskId"]:  # it downloaded: within the quota
                    assert store_bytes_on_disk(self.home) <= self.quota
            elif kind == "remove":
                call("remove", {"modelId": arg[0], "version": arg[1]})
                self.pinned.discard(arg)
                self.leases = [(i, k) for i, k in self.leases if k != arg]
            elif kind in ("pin", "unpin"):
                call(kind, {"modelId": arg[0], "version": arg[1]})
                (self.pinned.add if kind == "pin" else self.pinned.discard)(arg)
            elif kind == "lease":
                answer = call("getModelPath", {**_ref(arg), "lease": True})
                self.leases.append((answer["leaseId"], arg))
            elif kind == "release" and self.leases:
                assert call("releaseModel", {"leaseId": self.leases.pop(0)[0]})["released"]
            elif kind == "prune":
                call("prune", {"dryRun": arg, "olderThanDays": 0})
            elif kind == "quota":
                call("setLimits", {"maxStoreBytes": arg})
                self.quota = arg
            elif kind == "leftover":
                self.leftovers += 1
                part = self.home / "temp" / f"gone@{self.leftovers}@w.bin.part"
                part.write_bytes(b"p" * arg)
        except RpcError as error:
            # Expected refusals only: not installed, or the quota with nothing to evict.
            assert error.code in (1001, 1006), error
            if error.code == 1006:
                assert kind == "install" and error.data["reason"] == "quota"

    def check(self) -> None:
        usage = self.sidecar.call("diskUsage")
        assert usage["totalBytes"] == store_bytes_on_disk(self.home)
        on_disk = folders(self.home)
        assert registered(self.home) == on_disk
        assert {(v["modelId"], v["version"]) for v in usage["versions"]} == on_disk
        for _, key in self.leases:
            assert key in on_disk, f"leased {key} was taken"
        assert self.pinned <= on_disk, "a pinned version was taken"


def _ref(key: tuple[str, str]) -> dict[str, str]:
    return {"modelId": key[0], "version": key[1]}


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(operation, min_size=1, max_size=9))
def test_disk_usage_and_registry_agree_with_the_disk(repo: RepoServer, steps) -> None:
    folder = Path(tempfile.mkdtemp(prefix="store-ops-"))
    home = folder / "home"
    sidecar = Sidecar(home=home, repositories=[repo.url]).start()
    try:
        run = Run(sidecar, home)
        sidecar.call("getInfo")
        for kind, arg in steps:
            run.step(kind, arg)
            run.check()
    finally:
        sidecar.stop()
        sidecar.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
