from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import Sidecar


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
