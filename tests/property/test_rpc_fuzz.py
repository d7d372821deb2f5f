"""Hypothesis drives the JSON-RPC surface of ONE long-lived sidecar with random and
adversarial messages: every line it writes is a valid JSON-RPC 2.0 message, every
request gets its answer (each request of a batch too), notifications get none, the
daemon never dies, and nothing is written outside its home."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.repo_server import RepoServer

METHODS = [
    "getInfo",
    "getModelPath",
    "install",
    "listModels",
    "getTask",
    "listTasks",
    "pause",
    "resume",
    "cancel",
    "remove",
    "verify",
    "ranking",
    "installUrl",
]  # fmt: skip  (never "shutdown": the daemon must stay up for the next example)
PARAM_KEYS = [
    "modelId", "version", "dependencies", "refresh", "taskId", "limit", "url", "filename",
    "mode", "sha256",
]  # fmt: skip
WAIT = 10.0
DEEP = 200  # a line nested deeper may be refused as a parse error
QUIET = 0.03  # seconds without a new line after the sentinel's answer


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(line: bytes) -> Any:
    """JSON as RFC 8259 has it: no NaN/Infinity, UTF-8, ASCII-only on our stdout."""
    assert line.isascii(), f"non-ASCII on stdout: {line[:200]!r}"
    return json.loads(line, parse_constant=_reject_constant)


class BadLine(str):
    """A stdout line that is not strict JSON (kept so the example still drains)."""


def _parsed(line: bytes) -> Any:
    try:
        return strict_json(line)
    except (ValueError, AssertionError) as exc:
        return BadLine(f"{exc}: {line[:300]!r}")


def check_response(message: Any) -> None:
    assert isinstance(message, dict), message
    assert message.get("jsonrpc") == "2.0", message
    assert "id" in message, f"a response without id: {message}"
    request_id = message["id"]
    assert request_id is None or (
        isinstance(request_id, str | int | float) and not isinstance(request_id, bool)
    ), message
    assert ("result" in message) != ("error" in message), message
    assert set(message) <= {"jsonrpc", "id", "result", "error"}, message
    if "error" in message:
        error = message["error"]
        assert isinstance(error, dict), message
        assert isinstance(error.get("code"), int) and not isinstance(error["code"], bool)
        assert isinstance(error.get("message"), str), message
        assert set(error) <= {"code", "message", "data"}, message


def check_line(message: Any) -> None:
    assert not isinstance(message, BadLine), f"not a JSON line on stdout: {message}"
    if isinstance(message, list):
        assert message, "an empty array is never an answer"
        for item in message:
            check_response(item)
    elif isinstance(message, dict) and "method" in message:
        assert message.get("jsonrpc") == "2.0" and "id" not in message, message
        assert isinstance(message["method"], str) and isinstance(message.get("params"), dict)
    else:
        check_response(message)


class RawSidecar:
    """The daemon over pipes, every stdout line kept as raw bytes."""

    def __init__(self, home: Path, cwd: Path, repository: str) -> None:
        env = {
            **os.environ,
            "MODEL_MANAGER_HOME": str(home),
            "MODEL_MANAGER_REPOSITORY": repository,
        }
        self.stderr = open(home.parent / "fuzz-sidecar.stderr", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "--stall-timeout", "2", "--network-patience", "1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            cwd=cwd,
        )
        self.lines: list[bytes] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout
        for raw in self.process.stdout:
            with self.cond:
                self.lines.append(raw)
                self.cond.notify_all()

    def send(self, data: bytes) -> None:
        assert self.process.stdin
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def wait(self, probe, what: str, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (found := probe()):
                remaining = deadline - time.monotonic()
                assert self.process.poll() is None, f"the daemon died ({self.process.returncode})"
                assert remaining > 0, f"no {what} within {timeout}s"
                self.cond.wait(min(remaining, 0.2))
        return found

    def messages_since(self, start: int) -> list[Any]:
        with self.cond:
            raw = self.lines[start:]
        return [_parsed(line) for line in raw]

    def roundtrip(self, data: bytes, answered: bool = False) -> list[Any]:
        """Send ``data`` then a sentinel request; the lines that came meanwhile. With
        ``answered``, also wait for an answer to ``data``: one that waits on the network
        (install, ranking) may come well after the sentinel's."""
        start = len(self.lines)
        sentinel = f"sentinel-{uuid.uuid4().hex}"
        self.send(data)
        self.send(json.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "getInfo"}).encode())
        self.send(b"\n")

        def sentinel_seen() -> bool:
            return any(
                isinstance(m, dict) and m.get("id") == sentinel for m in self.messages_since(start)
            )

        self.wait(sentinel_seen, "answer to the sentinel")
        if answered:
            self.wait(lambda: len(only_responses(self.messages_since(start))) >= 2, "the answer")
        # Requests are served concurrently: an answer may trail the sentinel's a little.
        while True:
            seen = len(self.lines)
            time.sleep(QUIET)
            if len(self.lines) == seen:
                break
        return [
            m
            for m in self.messages_since(start)
            if not (isinstance(m, dict) and m.get("id") == sentinel)
        ]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream:
                stream.close()
        self.reader.join(5)
        self.stderr.close()


# --- strategies ---------------------------------------------------------------------------

texts = st.text(max_size=30) | st.sampled_from(["", "\u2028", "\u2029", "\ud800", "é中", "\x00"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
ids = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.none()
    | st.booleans()
    | st.lists(scalars, max_size=2)
    | st.dictionaries(st.text(max_size=3), scalars, max_size=2)
)
params = (
    st.dictionaries(st.sampled_from(PARAM_KEYS), values | texts, max_size=4)
    | st.fixed_dictionaries({"modelId": texts})
    | values
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if draw(st.integers(0, 9)) > 0:
        message["jsonrpc"] = "2.0"
    elif draw(st.booleans()):
        message["jsonrpc"] = draw(st.sampled_from(["1.0", "2", 2.0, None, ""]))
    if draw(st.integers(0, 4)) > 0:
        message["id"] = draw(ids)
    if draw(st.integers(0, 9)) > 0:
        message["method"] = draw(st.sampled_from(METHODS) | texts.filter(lambda m: m != "shutdown"))
    if draw(st.booleans()):
        message["params"] = draw(params)
    if draw(st.integers(0, 9)) == 0:
        message[draw(st.sampled_from(["extra", "result", "error"]))] = draw(values)
    return message


def nested(depth: int) -> bytes:
    return b'{"jsonrpc":"2.0","id":1,"method":"getModelPath","params":{"modelId":' + (
        b"[" * depth + b"]" * depth + b"}}"
    )


lines = st.one_of(
    requests().map(lambda r: json.dumps(r).encode()),
    requests().map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.lists(requests() | values, max_size=6).map(lambda b: json.dumps(b).encode()),
    values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(1, 200_000).map(lambda d: b"[" * d + b"]" * d),
    st.integers(1, 5_000).map(nested),
    st.integers(1, 3_000_000).map(
        lambda n: json.dumps(
            {"jsonrpc": "2.0", "id": n, "method": "getModelPath", "params": {"modelId": "x" * n}}
        ).encode()
    ),
    st.sampled_from(
        [
            b'{"jsonrpc":"2.0","id":NaN,"method":"getInfo"}',
            b'{"jsonrpc":"2.0","id":Infinity,"method":"getInfo"}',
            b'{"jsonrpc":"2.0","id":1e400,"method":"getInfo"}',
            b'{"jsonrpc":"2.0","id":7,"method":"ranking","params":{"limit":NaN}}',
            b'{"jsonrpc":"2.0","id":"\\ud800","method":"getInfo"}',
            b'{"jsonrpc":"2.0","id":8,"method":"getInfo"}\r',
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{",
            b"[]",
            b"[[]]",
            b"{}",
        ]
    ),
).filter(lambda line: b"\n" not in line)


# --- what each message must get -----------------------------------------------------------


def valid_id(message: dict[str, Any]) -> bool:
    request_id = message.get("id")
    return request_id is None or (
        isinstance(request_id, str | int | float)
        and not isinstance(request_id, bool)
        and not (isinstance(request_id, float) and not math.isfinite(request_id))
    )


def is_request(item: Any) -> bool:
    """A well-formed request object (answered with its id whatever its method/params)."""
    return (
        isinstance(item, dict)
        and item.get("jsonrpc") == "2.0"
        and isinstance(item.get("method"), str)
        and "id" in item
        and valid_id(item)
        and set(item) <= {"jsonrpc", "id", "method", "params"}
        and ("params" not in item or isinstance(item["params"], dict | list))
    )


def is_notification(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and item.get("jsonrpc") == "2.0"
        and isinstance(item.get("method"), str)
        and "id" not in item
        and set(item) <= {"jsonrpc", "method", "params"}
        and ("params" not in item or isinstance(item["params"], dict | list))
    )


def versionless_with_id(item: Any) -> bool:
    """No ``"jsonrpc": "2.0"`` but an id: refused, and answered with that id (issue 15)."""
    return (
        isinstance(item, dict)
        and item.get("jsonrpc") != "2.0"
        and item.get("id") is not None
        and valid_id(item)
    )


def decoded(line: bytes) -> tuple[bool, Any]:
    try:
        # Numbers out of float range (1e400) are refused like NaN: they cannot be echoed.
        return True, json.loads(
            line.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite
        )
    except (ValueError, RecursionError):
        return False, None


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return value


def same_id(a: Any, b: Any) -> bool:
    return (type(a) is type(b) and a == b) or (
        isinstance(a, int | float) and isinstance(b, int | float) and a == b
    )


def only_responses(lines: list[Any]) -> list[Any]:
    return [a for a in lines if not (isinstance(a, dict) and "method" in a)]


def answer_expected(line: bytes) -> bool:
    """Whether ``line`` gets an answer at all (anything but notifications does)."""
    if not line.strip():
        return False
    ok, message = decoded(line.rstrip(b"\r"))
    if not ok:
        return True
    if isinstance(message, list) and message:
        return not all(is_notification(item) for item in message)
    return not is_notification(message)


def check_answers(line: bytes, answers: list[Any]) -> None:
    for answer in answers:
        check_line(answer)
    responses = only_responses(answers)
    if not line.strip():
        assert responses == [], responses
        return
    ok, message = decoded(line.rstrip(b"\r"))
    deep_refusal = responses and isinstance(responses[0], dict) and responses[0].get("id") is None
    if ok and line.count(b"[") > DEEP and deep_refusal:
        # Nesting this deep may be refused as a whole instead of answered by its id.
        assert responses[0]["error"]["code"] in (-32700, -32600), responses
        return
    if not ok:
        assert len(responses) == 1 and responses[0]["id"] is None, responses
        assert responses[0]["error"]["code"] in (-32700, -32600), responses
        return
    if isinstance(message, list) and message:
        expected = [item for item in message if is_request(item) or versionless_with_id(item)]
        invalid = [
            i
            for i in message
            if not (is_request(i) or versionless_with_id(i) or is_notification(i))
        ]
        if not expected and not invalid:
            assert responses == [], f"notifications were answered: {responses}"
            return
        assert len(responses) == 1 and isinstance(responses[0], list), responses
        batch = responses[0]
        assert len(batch) == len(expected) + len(invalid), (message, batch)
        for item in expected:
            assert any(same_id(r["id"], item["id"]) for r in batch), (item, batch)
        return
    if is_notification(message):
        assert responses == [], f"a notification was answered: {responses}"
        return
    assert len(responses) == 1 and isinstance(responses[0], dict), responses
    if is_request(message) or versionless_with_id(message):
        assert same_id(responses[0]["id"], message["id"]), (message, responses)
    else:
        assert responses[0]["id"] is None and "error" in responses[0], responses
        assert responses[0]["error"]["code"] == -32600, responses


def outside_the_home(root: Path, home: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and home not in p.parents and p.name != "fuzz-sidecar.stderr"
    ]


def test_rpc_surface_survives_random_and_adversarial_messages(tmp_path: Path) -> None:
    repo = RepoServer().start()
    repo.add("m", "1", {"w.bin": b"w" * 100})
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    sidecar = RawSidecar(home, cwd, repo.url)
    try:
        sidecar.roundtrip(b"")  # started

        @settings(
            max_examples=120,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(lines)
        @example(b'[{"jsonrpc":"2.0","id":1,"method":"getInfo"},1]')
        @example(b'[{"jsonrpc":"2.0","id":2,"method":"getInfo"},{"jsonrpc":"2.0","id":3}]')
        @example(b'{"jsonrpc":"2.0","id":NaN,"method":"getInfo"}')
        @example(b"[" * 100_000 + b"]" * 100_000)
        def check(line: bytes) -> None:
            answers = sidecar.roundtrip(line + b"\n", answered=answer_expected(line))
            check_answers(line, answers)
            assert sidecar.process.poll() is None

        check()
        # Past the line limit (16 MiB): one error, and the daemon carries on.
        answers = sidecar.roundtrip(b'{"a":"' + b"x" * (17 * 1024 * 1024) + b'"}\n')
        assert len(answers) == 1 and answers[0]["error"]["code"] == -32600, answers
        assert sidecar.process.poll() is None
        assert outside_the_home(tmp_path, home) == []
    finally:
        sidecar.close()
        repo.stop()
