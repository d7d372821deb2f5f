"""The stdin thread answers getModelPath itself, even while the event loop serves
nothing at all, and hands every other line to the loop in order."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import anyio
import pytest

from sidecar.errors import ModelNotAvailable
from sidecar.rpc.framing import TooLong
from sidecar.rpc.methods import sync_handler
from sidecar.rpc.server import FastLane
from sidecar.rpc.stdio import LineWriter, StdinReader
from sidecar.wire import GetModelPathParams, ModelPathResult


@sync_handler(GetModelPathParams)
def get_model_path(p: GetModelPathParams) -> dict[str, Any]:
    if p.model_id != "whisper":
        raise ModelNotAvailable(p.model_id, p.version, "not_installed")
    return ModelPathResult(model_id="whisper", version="1", path="/models/whisper/1").wire()


def request(request_id: Any, method: str, params: Any) -> bytes:
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return json.dumps(message).encode() + b"\n"


def read_answers(fd: int, count: int) -> list[dict[str, Any]]:
    data = b""
    while data.count(b"\n") < count:
        data += os.read(fd, 65536)
    return [json.loads(line) for line in data.splitlines()]


def test_get_model_path_is_answered_while_the_loop_serves_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    lane = FastLane({"getModelPath": get_model_path})

    output = os.fdopen(stdout_write, "wb", buffering=0)

    async def scenario() -> list[bytes | TooLong]:
        writer = LineWriter(output)
        reader = StdinReader(stdin_read, 1024, lane, writer)
        async with anyio.create_task_group() as group:
            await group.start(writer.run_answer_writer)
            await group.start(reader.run)
            lines = [
                request(1, "listTasks", {}),
                request(2, "getModelPath", {"modelId": "whisper"}),
                b"not json\n",
                request(3, "getModelPath", {"modelId": "absent"}),
                request(4, "getModelPath", {"modelId": 5}),
                b'[{"jsonrpc":"2.0","id":5,"method":"getModelPath","params":{"modelId":"x"}}]\n',
                b'{"jsonrpc":"2.0","method":"getModelPath","params":{"modelId":"x"}}\n',
                b'{"jsonrpc":"2.0","id":6,"method":["getModelPath"]}\n',
                b"x" * 2000 + b"\n",
            ]
            await anyio.to_thread.run_sync(os.write, stdin_write, b"".join(lines))
            # Nothing has read reader.lines() yet: the loop is as good as frozen.
            answers = await anyio.to_thread.run_sync(read_answers, stdout_read, 3)
            by_id = {a["id"]: a for a in answers}
            assert by_id[2]["result"] == {
                "modelId": "whisper", "version": "1", "path": "/models/whisper/1"
            }  # fmt: skip
            assert by_id[3]["error"]["code"] == 1001  # MODEL_NOT_AVAILABLE
            assert by_id[4]["error"]["code"] == -32602
            os.close(stdin_write)
            handed_on = [line async for line in reader.lines()]
            group.cancel_scope.cancel()
        return handed_on

    handed_on = anyio.run(scenario)
    output.close()
    os.close(stdin_read)
    os.close(stdout_read)
    # Everything else reaches the loop, in order: other methods, bad JSON, batches,
    # notifications and overlong lines (whose errors the loop reports).
    assert handed_on == [
        request(1, "listTasks", {}).rstrip(b"\n"),
        b"not json",
        b'[{"jsonrpc":"2.0","id":5,"method":"getModelPath","params":{"modelId":"x"}}]',
        b'{"jsonrpc":"2.0","method":"getModelPath","params":{"modelId":"x"}}',
        b'{"jsonrpc":"2.0","id":6,"method":["getModelPath"]}',
        TooLong(1024),
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no lane failed


def test_a_burst_written_before_any_answer_is_read_does_not_deadlock() -> None:
    """A synchronous client writes all its requests, then reads: the stdin thread must
    keep reading while stdout is full."""
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    output = os.fdopen(stdout_write, "wb", buffering=0)
    burst = b"".join(request(i, "getModelPath", {"modelId": "whisper"}) for i in range(3000))
    assert len(burst) > 4 * 65536  # more than both pipes hold

    async def scenario() -> list[dict[str, Any]]:
        writer = LineWriter(output)
        reader = StdinReader(stdin_read, 1024, FastLane({"getModelPath": get_model_path}), writer)
        async with anyio.create_task_group() as group:
            await group.start(writer.run_answer_writer)
            await group.start(reader.run)
            with anyio.fail_after(20):  # the old reader blocked on stdout: this never ended
                await anyio.to_thread.run_sync(os.write, stdin_write, burst, abandon_on_cancel=True)
            answers = await anyio.to_thread.run_sync(read_answers, stdout_read, 3000)
            group.cancel_scope.cancel()
        return answers

    answers = anyio.run(scenario)
    output.close()
    for fd in (stdin_write, stdin_read, stdout_read):  # EOF first: the reader ends on it
        os.close(fd)
    assert sorted(a["id"] for a in answers) == list(range(3000))
