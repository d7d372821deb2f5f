from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import Sidecar

# As the sidecar runs (sidecar/__main__.py): no pydantic plugin scan when a model is
# first used, which in-process tests would otherwise see as blocking I/O on the loop.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

# CI must not fail on a counterexample nobody has seen before: fixed seeds there, fresh
# ones on developers' machines (and in make stress) to keep finding new cases.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def no_thread_outlives_its_test() -> Iterator[None]:
    """A non-daemon thread left running keeps pytest from exiting after the last test
    (CI then hangs to its time limit): fail the test that left it instead."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and not t.daemon]
    for thread in left:
        thread.join(timeout=5)
    still_running = [t.name for t in left if t.is_alive()]
    assert not still_running, f"threads still running after the test: {still_running}"


@pytest.fixture
def repo() -> Iterator[RepoServer]:
    server = RepoServer().start()
    yield server
    server.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def start_sidecar(home: Path, repo: RepoServer) -> Iterator[Callable[..., Sidecar]]:
    """Start sidecars on the test's home and repository; every stdout line must be JSON."""
    started: list[Sidecar] = []

    def start(**kwargs: Any) -> Sidecar:
        kwargs.setdefault("home", home)
        kwargs.setdefault("repositories", [repo.url])
        sidecar = Sidecar(**kwargs).start()
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.cleanup()
        assert not sidecar.bad_lines, f"non-protocol output on stdout: {sidecar.bad_lines[:3]}"
