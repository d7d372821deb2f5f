"""The CLI as a user runs it (a subprocess against the reference server): errors as one
line in the user's words, and an install that ends with a summary line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_repo.background import BackgroundServer
from tests.support.repo_helpers import publish_files, run_cli

ALIGN = {"align.bin": os.urandom(300_000)}
WHISPER = {"model.bin": os.urandom(700_000)}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[BackgroundServer]:
    storage = tmp_path / "storage"
    publish_files(storage, "align-zh", "1.0.0", ALIGN)
    publish_files(storage, "whisper-small-zh", "1.0.0", WHISPER, requires=("align-zh@1.0.0",))
    with BackgroundServer(storage) as server:
        yield server


def test_install_ends_with_a_summary_line(server: BackgroundServer, tmp_path: Path):
    done = run_cli("install", "whisper-small-zh", home=tmp_path / "home", repository=server.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    summary = next(line for line in lines if line.startswith("2 ready: downloaded "))
    assert "1.0 MB in 0:00:" in summary  # both models' bytes, and the time they took
    assert "/s average)" in summary
    assert lines[-1].startswith("installed whisper-small-zh@1.0.0: ")


def test_invalid_params_print_the_field_and_the_problem(tmp_path: Path):
    done = run_cli("ranking", "--limit", "5000", home=tmp_path / "home")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "INVALID_PARAMS: limit: Input should be less than or equal to 1000"
    )


def test_no_repository_says_how_to_set_one(tmp_path: Path):
    done = run_cli("install", "whisper-small-zh", home=tmp_path / "home")
    assert done.returncode == 1
    line = done.stderr.strip()
    assert line.startswith("REPOSITORY_UNAVAILABLE: cannot look up whisper-small-zh: ")
    assert "--repository" in line and "MODEL_MANAGER_REPOSITORY" in line
    assert "\n" not in line


def test_unknown_version_lists_the_versions(server: BackgroundServer, tmp_path: Path):
    done = run_cli("install", "align-zh@9", home=tmp_path / "home", repository=server.url)
    assert done.returncode == 1
    assert done.stderr.strip() == "VERSION_NOT_FOUND: align-zh@9 does not exist: align-zh has 1.0.0"


def test_base_url_ending_in_api(server: BackgroundServer, tmp_path: Path):
    done = run_cli("install", "align-zh", home=tmp_path / "home", repository=server.url + "/api")
    assert done.returncode == 1
    line = done.stderr.strip()
    assert line.startswith("MODEL_NOT_FOUND: align-zh is not in the repository")
    assert f"use {server.url} instead" in line
