"""Download hooks are reachable: a package that registers one under the entry-point
group ``model_manager.hooks`` sees every download start, progress, fail and complete,
and a hook that raises never breaks a download."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import Sidecar

HOOK_MODULE = """
import json, os

class Recorder:
    def _write(self, event, task, **extra):
        with open(os.environ["HOOK_EVENTS"], "a") as out:
            out.write(json.dumps({"event": event, "model": task.model_id, **extra}) + "\\n")

    def on_download_start(self, task):
        self._write("start", task)

    def on_download_progress(self, task):
        self._write("progress", task, bytes=task.bytes_done)

    def on_download_error(self, task, error):
        self._write("error", task, code=error.code)

    def on_download_complete(self, task):
        self._write("complete", task)


class Broken:
    def on_download_start(self, task):
        raise RuntimeError("a hook with a bug")
"""


def install_hook_package(site: Path) -> None:
    """A real installed distribution, as pip leaves one: module plus dist-info."""
    site.mkdir(parents=True)
    (site / "recorder_hook.py").write_text(HOOK_MODULE)
    info = site / "recorder_hook-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: recorder-hook\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[model_manager.hooks]\nrecorder = recorder_hook:Recorder\nbroken = recorder_hook:Broken\n"
    )


def test_an_installed_hook_sees_every_download_event(
    repo: RepoServer, home: Path, tmp_path: Path
) -> None:
    install_hook_package(tmp_path / "site")
    events = tmp_path / "events.jsonl"
    repo.add("whisper-small", "1.0.0", {"model.bin": os.urandom(3_000_000)})
    repo.bytes_per_second = 4_000_000  # long enough for progress ticks
    env = {
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
        "HOOK_EVENTS": str(events),
    }
    stored = repo.add("damaged", "1.0.0", {"w.bin": b"the bytes served"})
    stored.manifest_overrides["files"] = [
        {"path": "w.bin", "size_bytes": 16, "sha256": "0" * 64}  # no bytes match it
    ]
    sidecar = Sidecar(home=home, repositories=[repo.url], env=env).start()
    try:
        assert sidecar.install_and_wait("whisper-small")["state"] == "ready"
        assert sidecar.install_and_wait("damaged")["state"] == "failed"
    finally:
        sidecar.cleanup()
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [e["event"] for e in seen if e["model"] == "whisper-small"]
    assert kinds[0] == "start" and kinds[-1] == "complete", kinds
    assert "progress" in kinds
    assert {"event": "error", "model": "damaged", "code": "CHECKSUM_MISMATCH"} in seen
    assert "a hook with a bug" in sidecar.stderr()  # logged, and the install went on
