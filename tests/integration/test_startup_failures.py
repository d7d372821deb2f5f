"""Issue 15, item 3: a sidecar that cannot start its engine answers every request with a
typed error naming the path (or option) and the cause, and the CLI prints one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.repo_helpers import run_cli
from tests.support.sidecar_proc import RpcError, Sidecar

BAD_HOME = Path("/etc/hostname/mm")  # the repro: a home under a file


@pytest.fixture
def bad_home(tmp_path: Path) -> Path:
    if Path("/etc/hostname").is_file():
        return BAD_HOME
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "a-file" / "mm"


def test_a_home_under_a_file_answers_home_unavailable(tmp_path: Path, bad_home: Path):
    sidecar = Sidecar(tmp_path / "unused", env={"MODEL_MANAGER_HOME": str(bad_home)}).start()
    try:
        for method, params in (("getInfo", None), ("install", {"modelId": "m"})):
            with pytest.raises(RpcError) as refused:
                sidecar.call(method, params)
            error = refused.value
            assert error.data["code"] == "HOME_UNAVAILABLE", error.data
            assert str(bad_home) in error.message and "not a folder" in error.message
            assert error.data["path"] == str(bad_home)
        assert sidecar.call("shutdown") == {"stopping": True}
        assert sidecar.wait_exit() == 1
        assert "Traceback" not in sidecar.stderr()
        assert not sidecar.bad_lines
    finally:
        sidecar.cleanup()


def test_the_cli_prints_one_line_for_a_bad_home(bad_home: Path):
    listed = run_cli("list", home=bad_home)
    assert listed.returncode == 1
    [line] = listed.stderr.strip().splitlines()
    assert line.startswith("HOME_UNAVAILABLE: cannot use ") and str(bad_home) in line, line


def test_a_bad_option_answers_invalid_option(tmp_path: Path):
    sidecar = Sidecar(tmp_path / "home", args=["--max-connections-per-host", "lots"]).start()
    try:
        with pytest.raises(RpcError) as refused:
            sidecar.call("listModels")
        assert refused.value.data["code"] == "INVALID_OPTION"
        assert "--max-connections-per-host" in refused.value.message
        assert "lots" in refused.value.message
        sidecar.close_stdin()
        assert sidecar.wait_exit() == 2
    finally:
        sidecar.cleanup()
