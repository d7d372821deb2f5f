"""A home this user cannot write (read-only models/, temp/ or the home itself): every
failure is a typed error naming the folder, never INTERNAL_ERROR, and the daemon keeps
answering. The tests run as root, who may write anywhere: the sidecar runs as nobody."""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError, Sidecar

TYPED = {"PERMISSION_DENIED", "HOME_UNAVAILABLE"}


ROOT = Path(__file__).resolve().parents[2]
# The sidecar starts its engine with its own interpreter, which must be one nobody may
# run: a venv made from a Python under /root (pyenv) is not; the system's may be.
PROBE = "import subprocess, sys, sidecar, pydantic_core; subprocess.run([sys.executable, '-c', ''], check=True)"  # noqa: E501


@functools.cache
def as_ordinary_user() -> tuple[list[str], str, dict[str, str]]:
    """(command prefix, python, environment) that run the sidecar as an ordinary user."""
    if os.geteuid() != 0:
        return [], sys.executable, {}  # already one
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("the tests run as root and there is no setpriv to become nobody")
    prefix = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    paths = os.pathsep.join([sysconfig.get_paths()["purelib"], str(ROOT)])
    for python, env in [
        (sys.executable, {}),
        (f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}", {"PYTHONPATH": paths}),
    ]:
        probe = subprocess.run(
            [*prefix, python, "-c", PROBE], env={**os.environ, **env}, capture_output=True,
            cwd="/", check=False,
        )  # fmt: skip
        if probe.returncode == 0:
            return prefix, python, env
    pytest.skip("no Python here that the user nobody may run with this project's packages")


@pytest.fixture
def user_home() -> Iterator[Path]:
    """A home the ordinary user owns, in a folder that user can reach (not tmp_path,
    which is root's 0700)."""
    base = Path(tempfile.mkdtemp(prefix="mm-user-home-"))
    base.chmod(0o755)
    home = base / "home"
    home.mkdir()
    if os.geteuid() == 0:
        os.chown(home, 65534, 65534)
    yield home
    for path in [base, *base.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(stat.S_IRWXU)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def start_user(user_home: Path, repo: RepoServer) -> Iterator:
    started: list[Sidecar] = []

    def start() -> Sidecar:
        prefix, python, env = as_ordinary_user()
        sidecar = Sidecar(user_home, [repo.url], env=env, prefix=prefix, python=python).start()
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.cleanup()
        assert not sidecar.bad_lines


def read_only(path: Path) -> None:
    path.chmod(0o555)


def assert_typed(error: dict, folder: Path) -> None:
    assert error["code"] in TYPED, error
    assert str(folder) in error["message"], error


@pytest.mark.parametrize("folder", ["models", "temp", "."])
def test_install_into_a_read_only_folder_is_a_typed_error(
    start_user, repo: RepoServer, user_home: Path, folder: str
):
    repo.add("first", "1", {"f.bin": b"f" * 2000})
    repo.add("second", "1", {"s.bin": b"s" * 2000})
    sidecar = start_user()
    assert sidecar.install_and_wait("first")["state"] == "ready"
    target = (user_home / folder).resolve() if folder != "." else user_home
    read_only(target)
    task = sidecar.install_and_wait("second")
    assert task["state"] == "failed", task
    assert_typed(task["error"], target)
    assert sidecar.call("getModelPath", {"modelId": "first"})["version"] == "1"
    assert "INTERNAL_ERROR" not in sidecar.stderr()


@pytest.mark.parametrize("folder", ["models/first", "models/first/1"])
def test_remove_from_a_read_only_folder_is_a_typed_error(
    start_user, repo: RepoServer, user_home: Path, folder: str
):
    repo.add("first", "1", {"f.bin": b"f" * 2000})
    sidecar = start_user()
    assert sidecar.install_and_wait("first")["state"] == "ready"
    read_only(user_home / folder)  # (moving a folder to a new parent writes its "..")
    with pytest.raises(RpcError) as raised:
        sidecar.call("remove", {"modelId": "first"})
    assert raised.value.data["code"] in TYPED, raised.value.message
    assert str(user_home / "models") in raised.value.message
    assert (user_home / "models" / "first" / "1" / "f.bin").read_bytes() == b"f" * 2000


def test_a_read_only_empty_home_still_answers(start_user, repo: RepoServer, user_home: Path):
    repo.add("first", "1", {"f.bin": b"f" * 2000})
    read_only(user_home)
    sidecar = start_user()
    assert sidecar.call("getInfo")["version"]
    assert sidecar.call("listModels", {"refresh": True})["models"]
    with pytest.raises(RpcError) as raised:
        sidecar.call("getModelPath", {"modelId": "first"})
    assert raised.value.data["code"] == "MODEL_NOT_AVAILABLE"
    task = sidecar.install_and_wait("first")
    assert task["state"] == "failed", task
    assert_typed(task["error"], user_home)


def test_a_read_only_installed_home_starts_and_serves(
    start_user, repo: RepoServer, user_home: Path
):
    repo.add("first", "1", {"f.bin": b"f" * 2000})
    first = start_user()
    assert first.install_and_wait("first")["state"] == "ready"
    first.stop()
    for path in [user_home, *user_home.rglob("*")]:
        if path.is_dir():
            read_only(path)
    sidecar = start_user()
    path = Path(sidecar.call("getModelPath", {"modelId": "first"})["path"])
    assert (path / "f.bin").read_bytes() == b"f" * 2000
    assert sidecar.call("verify", {"modelId": "first"})["ok"]
