"""Serve requests line by line, each in its own task (a slow call never delays
another), and write answers and notifications through one writer."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio

# Its modules, not the package's top level: see sidecar.rpc.dispatch.
from jsonrpcserver.async_dispatcher import dispatch_to_response_pure
from jsonrpcserver.response import to_serializable
from jsonrpcserver.sentinels import NOCONTEXT

from sidecar.rpc.envelope import check_request
from sidecar.rpc.framing import TooLong
from sidecar.rpc.messages import (
    INVALID_REQUEST,
    PARSE_ERROR,
    error_message,
    parse_json,
    too_long_error,
)
from sidecar.rpc.methods import Handler
from sidecar.rpc.stdio import Writer

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 30.0
# One line's cost, whatever the line limit allows: 100k calls in one batch took ~1 GB.
MAX_BATCH = 256  # calls in one batch
MAX_LINE_VALUES = 200_000  # JSON values in one line, counted before it is parsed
MAX_BATCH_ANSWER_BYTES = 16 * 1024 * 1024  # answers of one batch held at once
SERVER_ERROR = -32000  # JSON-RPC's range for errors of the server itself


class RpcServer:
    def __init__(self, writer: Writer, methods: dict[str, Handler]) -> None:
        self.writer = writer
        self.methods = methods
        self._in_flight = 0
        self._idle = anyio.Event()
        self._idle.set()
        self.answered = anyio.Event()  # the first request is answered (or was a notification)

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        await self.writer.send({"jsonrpc": "2.0", "method": method, "params": params})

    async def serve(self, lines: AsyncIterator[bytes | TooLong]) -> None:
        """Serve until the lines end, then let answers in flight go out."""
        async with anyio.create_task_group() as group:
            async for line in lines:
                if isinstance(line, TooLong):
                    await self.writer.send(too_long_error(line.limit))
                    continue
                self._in_flight += 1
                self._idle = anyio.Event()
                group.start_soon(self._answer, line)
            await self.drain(DRAIN_TIMEOUT)
            group.cancel_scope.cancel()

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound, not a deadline
        """Wait (bounded) for the answers in flight, e.g. the one to ``shutdown``."""
        with anyio.move_on_after(timeout):
            await self._idle.wait()

    async def _answer(self, line: bytes) -> None:
        try:
            if (values := json_values_at_most(line)) > MAX_LINE_VALUES:
                detail = f"a line of about {values} JSON values; at most {MAX_LINE_VALUES}"
                await self.writer.send(error_message(INVALID_REQUEST, "Invalid Request", detail))
                return
            try:
                text = line.decode("utf-8")
                message = parse_json(text)
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                detail = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)[:200]
                await self.writer.send(error_message(PARSE_ERROR, "Parse error", detail))
                return
            if (refused := _without_version(message)) is not None:
                await self.writer.send(refused)
                return
            if isinstance(message, list) and len(message) > MAX_BATCH:
                detail = f"a batch of {len(message)} calls; at most {MAX_BATCH} in one line"
                await self.writer.send(error_message(INVALID_REQUEST, "Invalid Request", detail))
                return
            if isinstance(message, list) and message:
                # Each element on its own: one bad element must not sink the good ones.
                answers = await self._dispatch_each(message)
                if answers:
                    await self.writer.send_raw(("[" + ",".join(answers) + "]\n").encode("ascii"))
                return
            response = await self._dispatch(message)
            if response:
                await self.writer.send_raw(response.encode("ascii") + b"\n")
        finally:
            self.answered.set()
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _dispatch(self, request: Any) -> str:
        """One request object, parsed already: the answer's line, or "" for a notification."""
        # What ``jsonrpcserver.async_dispatch`` (async_main.dispatch_to_json) does.
        response = await dispatch_to_response_pure(
            deserializer=lambda _: request,
            validator=check_request,
            methods=self.methods,
            context=NOCONTEXT,
            post_process=to_serializable,  # type: ignore[arg-type]  # as async_main passes it
            request="",
        )
        return "" if response is None else json.dumps(cast(Any, response))

    async def _dispatch_each(self, batch: list[Any]) -> list[str]:
        answers: list[str] = [""] * len(batch)
        held = 0  # bytes of answers kept so far: past the budget, an answer is dropped

        async def one(index: int, request: Any) -> None:
            nonlocal held
            if (refused := _without_version(request)) is not None:
                answers[index] = json.dumps(refused)
                return
            if not isinstance(request, dict):  # a batch holds request objects, nothing else
                invalid = error_message(INVALID_REQUEST, "Invalid Request", "not an object")
                answers[index] = json.dumps(invalid)
                return
            answer = await self._dispatch(request)
            if answer and held + len(answer) > MAX_BATCH_ANSWER_BYTES:
                answer = json.dumps(_answer_dropped(request))
            held += len(answer)
            answers[index] = answer

        async with anyio.create_task_group() as group:
            for index, request in enumerate(batch):
                group.start_soon(one, index, request)
        return [answer for answer in answers if answer]


def _usable_id(request: dict[str, Any]) -> Any:
    request_id = request.get("id")
    usable = isinstance(request_id, (str, int, float)) and not isinstance(request_id, bool)
    return request_id if usable else None


def _without_version(request: Any) -> dict[str, Any] | None:
    """The refusal of a request that lacks ``"jsonrpc": "2.0"`` but has an id, with that
    id: jsonrpcserver answers it with id null, and a client waiting on its id would
    wait for ever. None for anything else (jsonrpcserver answers it)."""
    if not isinstance(request, dict) or request.get("jsonrpc") == "2.0":
        return None
    request_id = _usable_id(request)
    if request_id is None:
        return None
    problem = 'no "jsonrpc" member' if "jsonrpc" not in request else '"jsonrpc" is not "2.0"'
    detail = f'{problem}: every request needs "jsonrpc": "2.0"'
    return error_message(INVALID_REQUEST, "Invalid Request", detail, request_id)


def _answer_dropped(request: dict[str, Any]) -> dict[str, Any]:
    """Stands for an answer that would take the batch's answers past their budget."""
    detail = (
        f"the call ran, but the answers to this batch passed {MAX_BATCH_ANSWER_BYTES} "
        "bytes: send it on its own for its answer"
    )
    return error_message(SERVER_ERROR, "Answer too large", detail, _usable_id(request))


def json_values_at_most(line: bytes) -> int:
    """An upper bound on the JSON values in ``line``, at C speed before any object
    exists: each value after the first follows a comma, a colon or an opening bracket."""
    return 1 + sum(line.count(mark) for mark in (b",", b":", b"[", b"{"))
