"""Reuse of installed files by digest never exposes an installed file to writing.

A manifest that lists an installed file's digest with another size (or with bytes that
do not match) once truncated and rewrote that installed file in place through a hard
link into the new version's part.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.repo_server import RepoServer, sha256
from tests.support.sidecar_proc import Sidecar

SHARED = os.urandom(5000)
SHARED_DIGEST = sha256(SHARED)


def snapshot(home: Path) -> dict[str, bytes]:
    models = home / "models"
    return {
        p.relative_to(models).as_posix(): p.read_bytes() for p in models.rglob("*") if p.is_file()
    }


def lie_about(stored: Any, path: str, size: int, digest: str) -> None:
    """Make the manifest claim ``digest``/``size`` for ``path`` whatever is served."""
    files = [dict(f) for f in stored.manifest()["files"]]
    for entry in files:
        if entry["path"] == path:
            entry.update(size_bytes=size, sha256=digest)
    stored.manifest_overrides["files"] = files


@pytest.mark.parametrize("claimed_size", [100, 6000, 40 * 1024 * 1024])
def test_a_manifest_reusing_a_digest_with_another_size_leaves_the_installed_file_alone(
    start_sidecar, repo: RepoServer, home: Path, claimed_size: int
):
    repo.add("model-a", "1.0.0", {"weights.bin": SHARED})
    sidecar = start_sidecar()
    assert sidecar.install_and_wait("model-a")["state"] == "ready"
    before = snapshot(home)

    # Model B claims A's digest with another size; the server serves that many bytes.
    stored = repo.add("model-b", "1.0.0", {"w.bin": os.urandom(claimed_size)})
    lie_about(stored, "w.bin", claimed_size, SHARED_DIGEST)
    task = sidecar.install_and_wait("model-b")

    assert task["state"] == "failed"
    assert task["error"]["code"] == "CHECKSUM_MISMATCH"
    assert snapshot(home) == before
    assert sidecar.call("verify", {"modelId": "model-a"})["ok"] is True


def test_an_identical_installed_file_is_reused_without_a_download(
    start_sidecar, repo: RepoServer, home: Path
):
    repo.add("model-a", "1.0.0", {"weights.bin": SHARED})
    repo.add("model-b", "1.0.0", {"copy.bin": SHARED, "own.txt": b"b"})
    sidecar = start_sidecar()
    assert sidecar.install_and_wait("model-a")["state"] == "ready"
    task = sidecar.install_and_wait("model-b")
    assert task["state"] == "ready", task
    assert repo.file_requests("model-b/1.0.0/copy.bin") == []
    assert (home / "models/model-b/1.0.0/copy.bin").read_bytes() == SHARED
    assert task["bytesDone"] == task["bytesTotal"] == len(SHARED) + 1
    # Removing the source keeps the reused file whole.
    sidecar.call("remove", {"modelId": "model-a"})
    assert sidecar.call("verify", {"modelId": "model-b"})["ok"] is True


def test_an_installed_file_changed_on_disk_is_not_reused(
    start_sidecar, repo: RepoServer, home: Path
):
    repo.add("model-a", "1.0.0", {"weights.bin": SHARED})
    repo.add("model-b", "1.0.0", {"copy.bin": SHARED})
    sidecar = start_sidecar()
    assert sidecar.install_and_wait("model-a")["state"] == "ready"
    tampered = home / "models/model-a/1.0.0/weights.bin"
    tampered.write_bytes(b"x" * len(SHARED))  # same size, other bytes
    task = sidecar.install_and_wait("model-b")
    assert task["state"] == "ready", task
    assert (home / "models/model-b/1.0.0/copy.bin").read_bytes() == SHARED
    assert repo.storage_bytes("model-b") == len(SHARED)


def test_a_staged_link_to_an_installed_file_never_becomes_a_part(
    start_sidecar, repo: RepoServer, home: Path
):
    """A crash during the move leaves staging holding links to installed files; the
    next run must not turn them into parts that a download writes through."""
    repo.add("model-a", "1.0.0", {"weights.bin": SHARED})
    sidecar = start_sidecar()
    assert sidecar.install_and_wait("model-a")["state"] == "ready"
    before = snapshot(home)
    sidecar.stop()

    staging = home / "temp" / "model-b@1.0.0.staging"
    staging.mkdir(parents=True)
    os.link(home / "models/model-a/1.0.0/weights.bin", staging / "w.bin")
    stored = repo.add("model-b", "1.0.0", {"w.bin": os.urandom(6000)})
    lie_about(stored, "w.bin", 6000, SHARED_DIGEST)
    task = start_sidecar().install_and_wait("model-b")
    assert task["state"] == "failed"
    assert snapshot(home) == before


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    claims=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2),  # which installed file's digest
            st.sampled_from([0, 1, 4999, 5000, 5001, 70_000]),  # claimed size
            st.booleans(),  # serve the true bytes (when the size allows) or others
        ),
        min_size=1,
        max_size=3,
    )
)
def test_random_manifests_never_change_another_models_files(
    tmp_path_factory: pytest.TempPathFactory, claims: list[tuple[int, int, bool]]
):
    home = tmp_path_factory.mktemp("home")
    repo = RepoServer().start()
    sidecar = Sidecar(home=home, repositories=[repo.url]).start()
    try:
        installed = [os.urandom(5000) for _ in range(3)]
        for index, data in enumerate(installed):
            repo.add(f"base-{index}", "1.0.0", {"f.bin": data, "same.txt": b"shared"})
            assert sidecar.install_and_wait(f"base-{index}")["state"] == "ready"
        before = snapshot(home)
        files = {}
        for number, (source, size, honest) in enumerate(claims):
            true_bytes = installed[source]
            served = true_bytes if honest and size == len(true_bytes) else os.urandom(size)
            files[f"claim{number}.bin"] = (served, size, sha256(true_bytes))
        stored = repo.add("newcomer", "1.0.0", {p: d for p, (d, _, _) in files.items()})
        entries = [dict(f) for f in stored.manifest()["files"]]
        for entry in entries:
            _, size, digest = files[entry["path"]]
            entry.update(size_bytes=size, sha256=digest)
        stored.manifest_overrides["files"] = entries
        task = sidecar.install_and_wait("newcomer")
        assert task["state"] in {"ready", "failed"}
        after = snapshot(home)
        assert {k: v for k, v in after.items() if not k.startswith("newcomer/")} == before
        if task["state"] == "ready":
            for path, (_, _, digest) in files.items():
                assert sha256(after[f"newcomer/1.0.0/{path}"]) == digest
    finally:
        sidecar.cleanup()
        repo.stop()
