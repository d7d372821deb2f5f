"""Issue 15, item 2: one engine per home. The app's sidecar (stdio) and two CLI processes
on one home see one task list and one progress; pause and cancel from any of them act
on the download that runs; when the owner is killed, a waiting client takes over and
the task ends ready."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.repo_helpers import run_cli
from tests.support.repo_server import RepoServer

DATA = os.urandom(6_000_000)
FILE = "/storage/models/big/1/w.bin"


def cli_install(home: Path, repo: RepoServer) -> subprocess.Popen[str]:
    """`model-manager install big`, left running: it follows the task's progress."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_MANAGER_")}
    command = [
        sys.executable, "-m", "model_manager_cli", "--home", str(home),
        "--repository", repo.url, "install", "big",
    ]  # fmt: skip
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def owner_pid(home: Path) -> int | None:
    try:
        return int(json.loads((home / "engine.lock").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def tasks_of(home: Path, repo: RepoServer) -> list[dict]:
    listed = run_cli("tasks", "--json", home=home, repository=repo.url)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_the_app_and_two_clis_share_one_engine(start_sidecar, repo: RepoServer, home: Path):
    repo.add("big", "1", {"w.bin": DATA})
    repo.bytes_per_second = 300_000  # the CLIs take seconds to start on a busy machine
    app = start_sidecar()
    app_pid = app.call("getInfo")["pid"]
    installing = cli_install(home, repo)
    try:
        # The CLI's install is the app's task: the app sees it and its progress.
        app.wait_for(
            lambda: [n for n in app.notifications if n["method"] == "task.progress"],
            timeout=30,
            what="progress of the CLI's install, seen by the app",
        )
        [task] = app.call("listTasks")["tasks"]
        [listed] = tasks_of(home, repo)  # the second CLI
        assert listed["taskId"] == task["taskId"]
        assert listed["bytesTotal"] == task["bytesTotal"] == len(DATA)
        assert owner_pid(home) == app_pid

        # Pause from the second CLI stops the bytes the server sends.
        paused = run_cli("pause", "big", home=home, repository=repo.url)
        assert paused.returncode == 0, paused.stderr
        app.wait_task(task["taskId"], {"paused"})
        sent = repo.bytes_sent[FILE]
        seen = app.call("getTask", {"taskId": task["taskId"]})["bytesDone"]
        time.sleep(1.0)  # a running download would send ~300 kB meanwhile
        assert repo.bytes_sent[FILE] == sent
        assert 0 < seen < len(DATA)
        [listed] = tasks_of(home, repo)
        assert (listed["state"], listed["bytesDone"]) == ("paused", seen)

        # Resume from the app, cancel from the second CLI: the task ends for everyone.
        repo.bytes_per_second = 200_000  # still running when the CLI, slow to start, cancels
        app.call("resume", {"taskId": task["taskId"]})
        app.wait_task(task["taskId"], {"downloading"})
        cancelled = run_cli("cancel", "big", home=home, repository=repo.url)
        assert cancelled.returncode == 0, cancelled.stderr
        _, stderr = installing.communicate(timeout=30)
        assert installing.returncode == 1 and "CANCELLED: big@1" in stderr, stderr
        assert app.call("getTask", {"taskId": task["taskId"]})["state"] == "cancelled"
        assert [t["state"] for t in tasks_of(home, repo)] == ["cancelled"] or not tasks_of(
            home, repo
        )
        assert list((home / "temp").iterdir()) == []  # no part, no staging folder
    finally:
        if installing.poll() is None:
            installing.kill()
            installing.communicate()


def test_killing_the_owner_hands_the_home_to_a_waiting_client(
    start_sidecar, repo: RepoServer, home: Path
):
    repo.add("big", "1", {"w.bin": DATA})
    repo.bytes_per_second = 300_000  # the CLIs take seconds to start on a busy machine
    app = start_sidecar()
    app_pid = app.call("getInfo")["pid"]
    installing = cli_install(home, repo)
    try:
        app.wait_for(
            lambda: [n for n in app.notifications if n["method"] == "task.progress"],
            timeout=30,
            what="the CLI's install under way in the app's engine",
        )
        os.kill(app_pid, signal.SIGKILL)
        app.wait_for(lambda: owner_pid(home) not in (None, app_pid), timeout=2, what="a new owner")
        repo.bytes_per_second = None
        stdout, stderr = installing.communicate(timeout=60)
        assert installing.returncode == 0, stderr
        assert "installed big@1" in stdout
        assert (home / "models" / "big" / "1" / "w.bin").read_bytes() == DATA
        assert [t["state"] for t in tasks_of(home, repo)] in ([], ["ready"])
    finally:
        if installing.poll() is None:
            installing.kill()
            installing.communicate()


def test_pause_and_cancel_from_another_terminal_act_on_the_running_install(
    repo: RepoServer, home: Path
):
    """The issue's steps: `install` in one terminal, `pause` then `cancel` in another."""
    repo.add("big", "1", {"w.bin": DATA})
    repo.bytes_per_second = 300_000  # the CLIs take seconds to start on a busy machine
    installing = cli_install(home, repo)
    try:
        deadline = time.monotonic() + 30
        while repo.bytes_sent[FILE] < 500_000:
            assert installing.poll() is None and time.monotonic() < deadline, "no download"
            time.sleep(0.05)
        paused = run_cli("pause", "big", home=home, repository=repo.url)
        assert paused.returncode == 0 and "is paused" in paused.stdout, paused
        sent = repo.bytes_sent[FILE]
        time.sleep(1.0)  # a running download would send ~300 kB meanwhile
        assert repo.bytes_sent[FILE] == sent, "the download went on after pause"
        cancelled = run_cli("cancel", "big", home=home, repository=repo.url)
        assert cancelled.returncode == 0 and "is cancelled" in cancelled.stdout, cancelled
        _, stderr = installing.communicate(timeout=30)
        assert "INTERNAL_ERROR" not in stderr and "CANCELLED: big@1" in stderr, stderr
        assert list((home / "temp").iterdir()) == []  # no part, no staging folder
    finally:
        if installing.poll() is None:
            installing.kill()
            installing.communicate()
