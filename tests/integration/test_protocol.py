"""The JSON-RPC surface over real pipes: framing, errors, batches, lifecycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError


def test_echo_one_request_prints_one_line_and_exits_cleanly(home: Path):
    result = subprocess.run(
        [sys.executable, "-m", "sidecar"],
        input=b'{"jsonrpc":"2.0","id":1,"method":"getInfo"}\n',
        capture_output=True,
        env={**os.environ, "MODEL_MANAGER_HOME": str(home)},
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    answer = json.loads(lines[0])
    assert answer["id"] == 1
    assert answer["result"]["home"] == str(home)
    assert answer["result"]["pid"] > 0


def test_help_documents_every_option():
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "--help"], capture_output=True, timeout=30
    )
    assert result.returncode == 0
    for option in (
        "--home",
        "--repository",
        "--scheduler",
        "MODEL_MANAGER_HOME",
        "MODEL_MANAGER_REPOSITORY",
    ):
        assert option in result.stdout.decode()


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", -32700),
        (b"\xff\xfe\x00garbage", -32700),
        (b'{"jsonrpc":"2.0","id":1', -32700),
        (b"[]", -32600),
        (b'{"jsonrpc":"1.0","id":"raw","method":"getInfo"}', -32600),
        (b'{"jsonrpc":"2.0","id":"raw","method":42}', -32600),
        (b'{"jsonrpc":"2.0","id":"raw","method":"noSuchMethod"}', -32601),
        (b'{"jsonrpc":"2.0","id":"raw","method":"install","params":{"modelId":5}}', -32602),
        (b'{"jsonrpc":"2.0","id":"raw","method":"install","params":{}}', -32602),
        (
            b'{"jsonrpc":"2.0","id":"raw","method":"install","params":{"modelId":"a","bogus":1}}',
            -32602,
        ),
        (b'{"jsonrpc":"2.0","id":"raw","method":"install","params":["a"]}', -32602),
        (b'{"jsonrpc":"2.0","id":"raw","method":"getTask","params":{"taskId":""}}', -32602),
        (b"[" * 100_000 + b"]" * 100_000, -32700),
    ],
)
def test_bad_lines_get_the_standard_error_and_the_daemon_lives(
    start_sidecar, line: bytes, code: int
):
    sidecar = start_sidecar()
    sidecar.send_raw(line + b"\n")
    answer = sidecar.wait_for(lambda: sidecar.lines and sidecar.lines[-1])
    assert answer["error"]["code"] == code
    assert sidecar.call("getInfo")["pid"] == sidecar.process.pid


def test_an_overlong_line_is_refused_and_the_next_line_served(start_sidecar):
    sidecar = start_sidecar()
    sidecar.send_raw(
        b'{"jsonrpc":"2.0","id":1,"method":"getInfo","params":{"x":"'
        + b"a" * (17 * 1024 * 1024)
        + b'"}}\n'
    )
    answer = sidecar.wait_for(lambda: sidecar.null_id_responses, what="the refusal")[0]
    assert answer["error"]["code"] == -32600
    assert sidecar.call("getInfo")["pid"] == sidecar.process.pid


def test_batches_and_notifications(start_sidecar):
    sidecar = start_sidecar()
    sidecar.send(
        [
            {"jsonrpc": "2.0", "id": "a", "method": "getInfo"},
            {"jsonrpc": "2.0", "method": "getInfo"},  # a notification: never answered
            {"jsonrpc": "2.0", "id": "b", "method": "nope"},
            {"jsonrpc": "2.0", "id": "c", "method": "getModelPath", "params": {"modelId": "x"}},
        ]
    )
    batch = sidecar.wait_for(lambda: [m for m in sidecar.lines if isinstance(m, list)])[0]
    by_id = {item["id"]: item for item in batch}
    assert set(by_id) == {"a", "b", "c"}
    assert "result" in by_id["a"]
    assert by_id["b"]["error"]["code"] == -32601
    assert by_id["c"]["error"]["code"] == 1001
    sidecar.send({"jsonrpc": "2.0", "method": "getInfo"})
    sidecar.send([{"jsonrpc": "2.0", "method": "getInfo"}])
    sidecar.call("getInfo")
    assert len(sidecar.lines) == 2


def test_output_is_ascii_escaped(start_sidecar):
    sidecar = start_sidecar()
    sidecar.send({"jsonrpc": "2.0", "id": "\u2028\u2029\u6a21\u578b", "method": "getInfo"})
    sidecar.wait_for(lambda: sidecar.responses.get("\u2028\u2029\u6a21\u578b"))
    answer = next(line for line in sidecar.raw_lines if b"\\u2028" in line)
    assert answer.isascii()  # escaped, so no line reader can split it
    assert b"\\u2028\\u2029\\u6a21\\u578b" in answer


def test_shutdown_stops_gracefully_and_keeps_parts(start_sidecar, repo: RepoServer, home: Path):
    repo.add("big", "1", {"w.bin": os.urandom(4_000_000)})
    repo.bytes_per_second = 1_000_000
    sidecar = start_sidecar()
    task_id = sidecar.call("install", {"modelId": "big"})["taskId"]
    sidecar.wait_for(
        lambda: (
            any((home / "temp").glob("*.part"))
            and sidecar.call("getTask", {"taskId": task_id})["bytesDone"] > 0
        )
    )
    assert sidecar.call("shutdown") == {"stopping": True}
    assert sidecar.wait_exit() == 0
    assert list((home / "temp").glob("*.part"))
    assert list((home / "in-progress-downloads").iterdir()) == []
    assert json.loads((home / "tasks.json").read_text())[0]["taskId"] == task_id


def test_sigterm_stops_gracefully(start_sidecar, home: Path):
    sidecar = start_sidecar()
    sidecar.call("getInfo")
    sidecar.process.send_signal(signal.SIGTERM)
    assert sidecar.wait_exit() == 0
    assert "shutting down" in sidecar.stderr()


def test_the_sidecar_exits_when_its_parent_dies(home: Path, tmp_path: Path):
    pid_file = tmp_path / "pid"
    parent = textwrap.dedent(
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-m", "sidecar", "--home", {str(home)!r}],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(1.5)
        """
    )
    subprocess.run([sys.executable, "-c", parent], timeout=30, check=True)
    child_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(child_pid, signal.SIGKILL)
    pytest.fail("the sidecar outlived its parent")


class _Scheduler:
    def __init__(self, body: Any) -> None:
        self.body = body
        self.alive = True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if not outer.alive:
                    time.sleep(5)  # a hung scheduler
                data = json.dumps(outer.body).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_ranking_with_a_live_then_hung_scheduler(start_sidecar, repo: RepoServer):
    repo.add("marian-zh-en", "1", {"m.bin": b"m"})
    scheduler = _Scheduler(
        [
            {"model_id": "whisper-small", "request_count": 10, "rank": 2},
            {"model_id": "marian-zh-en", "request_count": 30, "rank": 1},
        ]
    )
    try:
        sidecar = start_sidecar(args=["--scheduler", scheduler.url])
        sidecar.install_and_wait("marian-zh-en")
        fresh = sidecar.call("ranking", {"refresh": True})
        assert fresh["stale"] is False
        assert fresh["items"] == [
            {"modelId": "marian-zh-en", "requestCount": 30, "rank": 1, "installed": True},
            {"modelId": "whisper-small", "requestCount": 10, "rank": 2, "installed": False},
        ]
        scheduler.alive = False
        started = time.monotonic()
        stale = sidecar.call("ranking", {"refresh": True, "limit": 1})
        assert time.monotonic() - started < 4.5  # answers in ~2 s, not after the hang
        assert stale["stale"] is True and len(stale["items"]) == 1
    finally:
        scheduler.close()


def test_ranking_without_any_scheduler_answer(start_sidecar):
    sidecar = start_sidecar(args=["--scheduler", "http://127.0.0.1:9"])
    with pytest.raises(RpcError) as raised:
        sidecar.call("ranking")
    assert raised.value.data["code"] == "SCHEDULER_UNAVAILABLE"


def test_list_models_works_from_the_cache_when_the_repository_is_down(
    start_sidecar, repo: RepoServer, home: Path
):
    repo.add("whisper-small", "1.0.0", {"m.bin": b"m"})
    repo.add("whisper-small", "1.1.0", {"m.bin": b"n"})
    repo.add("marian-zh-en", "1", {"m.bin": b"x"})
    first = start_sidecar()
    first.install_and_wait("whisper-small", version="1.0.0")
    listed = first.call("listModels", {"refresh": True})
    assert listed["stale"] is False
    by_id = {m["id"]: m for m in listed["models"]}
    assert by_id["whisper-small"]["updateAvailable"] is True
    assert by_id["whisper-small"]["state"] == "ready"
    assert by_id["marian-zh-en"]["state"] == "not_installed"
    first.stop()
    second = start_sidecar(repositories=["http://127.0.0.1:9"])
    offline = second.call("listModels", {"refresh": True})
    assert offline["stale"] is True
    assert {m["id"] for m in offline["models"]} == {"whisper-small", "marian-zh-en"}
    assert second.call("getModelPath", {"modelId": "whisper-small"})["version"] == "1.0.0"
