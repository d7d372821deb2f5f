"""The parent's end of the transfer worker (``sidecar.transfer.worker``): jobs, limit changes
and cancels go out; progress, results and typed failures come back. No state is
mirrored: the worker knows its jobs, this process knows everything else.

The worker starts a second after this process (its start-up competes with ours for
the CPU otherwise), or with the first job if that comes sooner. If it dies, it is started
again and every unfinished job is sent anew: each resumes from its part, and no error
reaches the app. A cancelled job is waited for until the worker confirms it stopped
writing, so nothing deletes or moves a part while it is written; a worker that does
not confirm in time is killed.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process, TaskGroup, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from sidecar.config import Settings
from sidecar.errors import ALL_ERRORS, ModelManagerError, NetworkError
from sidecar.transfer.target import FileTarget, Notice, Progress, SizeLearned

log = logging.getLogger(__name__)
worker_log = logging.getLogger("sidecar.transfer.worker")

WARM_UP_AFTER = 1.0  # seconds after start: the worker's imports never delay the first answers
MAX_LINE = 1 << 20  # the worker's lines are small; a longer one is a broken worker
CANCEL_GRACE = 10.0  # seconds a cancelled job may take to stop before the worker is killed
RESTARTS_ALLOWED = 5  # deaths within RESTART_WINDOW before unfinished jobs fail
RESTART_WINDOW = 60.0
_ERRORS = {cls.name: cls for cls in ALL_ERRORS}


@dataclass
class Job:
    number: int
    message: dict[str, Any]
    progress: Progress
    size_learned: SizeLearned | None
    notice: Notice | None = None
    finished: anyio.Event = field(default_factory=anyio.Event)
    outcome: dict[str, Any] = field(default_factory=dict)


class TransferClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs: dict[int, Job] = {}
        self.numbers = itertools.count(1)
        self.process: Process | None = None
        self.starting = anyio.Lock()
        self.deaths: list[float] = []
        self.limits: dict[str, Any] = {
            "rate": settings.max_bytes_per_second,
            "maxConnections": settings.max_connections_per_file,
        }
        self.proxy: str | None = settings.proxy
        self._group: TaskGroup | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                task_status.started()
                await anyio.sleep(WARM_UP_AFTER)  # ready before the first download, usually
                async with self.starting:
                    if self.process is None and not self.settings.offline:
                        await self._start_worker()
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_worker()

    async def fetch(
        self,
        urls: list[str],
        target: FileTarget,
        progress: Progress,
        size_learned: SizeLearned | None = None,
        notice: Notice | None = None,
    ) -> str:
        """Fill ``target.part`` in the worker; its SHA-256, or the worker's typed error.
        ``notice`` hears of problems the worker got over (a bad piece fetched again)."""
        number = next(self.numbers)
        message = {
            "op": "fetch",
            "id": number,
            "urls": urls,
            "part": str(target.part),
            "size": target.expected_size,
            "sha256": target.sha256,
            "root": str(self.settings.home),
            "label": target.label,
        }
        if target.pieces is not None:
            message["pieceSize"] = target.pieces.size
            message["pieces"] = list(target.pieces.digests)
        job = self.jobs[number] = Job(number, message, progress, size_learned, notice)
        try:
            await self._send(message)
            await job.finished.wait()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._cancel(job)
            raise
        finally:
            del self.jobs[number]
        return _result(job.outcome)

    async def set_limits(self, rate: int | None, max_connections: int) -> None:
        self.limits = {"rate": rate, "maxConnections": max_connections}
        if self.process is not None:
            await self._write({"op": "limits", **self.limits})

    async def use_settings(self, settings: Settings) -> None:
        """The home moved (moveStore, no job running): the next job starts a worker
        that knows the new one."""
        self.settings = settings
        await self._stop_worker()

    async def set_proxy(self, proxy: str | None) -> None:
        self.proxy = proxy
        if self.process is not None:
            await self._write({"op": "proxy", "proxy": proxy})

    # --- the worker process -------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        async with self.starting:
            if self.process is None:
                await self._start_worker()
        await self._write(message)

    async def _write(self, message: dict[str, Any]) -> None:
        process = self.process
        if process is None or process.stdin is None:
            return  # it died: the restart sends every unfinished job again
        # If it died meanwhile, the reader sees the death and restarts it.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await process.stdin.send(json.dumps(message).encode() + b"\n")

    async def _start_worker(self) -> None:
        assert self._group is not None, "TransferClient.serve is not running"
        command = [sys.executable, "-m", "sidecar.transfer.worker", str(os.getpid())]
        # Spawned from the event loop's thread, which lives as long as this process:
        # the worker's PR_SET_PDEATHSIG follows that thread.
        process = await anyio.open_process(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop it
        )
        self.process = process
        await self._write({"op": "hello", "settings": self._hello()})
        await self._write({"op": "limits", **self.limits})
        self._group.start_soon(self._read_events, process)
        self._group.start_soon(self._read_logs, process)
        log.info("transfer worker %d started", process.pid)

    def _hello(self) -> dict[str, Any]:
        s = self.settings
        return {
            "home": str(s.home),
            "repositories": list(s.repositories),
            "token": s.token,
            "retries": s.retries_per_file,
            "stallTimeout": s.stall_timeout,
            "networkPatience": s.network_patience,
            "minSpeed": s.min_speed,
            "minSpeedWindow": s.min_speed_window,
            "caBundle": str(s.ca_bundle) if s.ca_bundle else None,
            "proxy": self.proxy,
            "maxConnectionsPerHost": s.max_connections_per_host,
            "maxConnectionsPerFile": s.max_connections_per_file,
            "maxConnections": s.max_connections_total,
            "rate": self.limits["rate"],
            "logLevel": s.log_level,
        }

    async def _read_events(self, process: Process) -> None:
        assert process.stdout is not None
        async for line in _lines(process.stdout):
            self._on_event(json.loads(line))
        code = await process.wait()
        if self.process is process:
            self.process = None
            await self._restart(code)

    def _on_event(self, event: dict[str, Any]) -> None:
        job = self.jobs.get(event["id"])
        if job is None:
            return  # a job that ended here first (cancelled, or re-sent after a restart)
        if "progress" in event:
            job.progress(event["progress"])
        elif "size" in event:
            if job.size_learned is not None:
                job.size_learned(event["size"])
        elif "notice" in event:
            if job.notice is not None:
                job.notice(str(event["notice"]["code"]), str(event["notice"]["message"]))
        else:
            job.outcome = event
            job.finished.set()

    async def _restart(self, code: int) -> None:
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW] + [now]
        unfinished = [job for job in self.jobs.values() if not job.finished.is_set()]
        log.warning(
            "transfer worker ended (code %s) with %d jobs unfinished", code, len(unfinished)
        )
        if not unfinished:
            return
        if len(self.deaths) > RESTARTS_ALLOWED:
            for job in unfinished:
                job.outcome = {"error": {"name": "worker", "message": f"exit code {code}"}}
                job.finished.set()
            return
        for job in unfinished:  # each resumes from its part
            await self._send(job.message)

    async def _read_logs(self, process: Process) -> None:
        assert process.stderr is not None
        async for line in _lines(process.stderr):
            level, _, text = line.decode(errors="replace").partition(" ")
            worker_log.log(logging.getLevelName(level) if level.isupper() else 20, "%s", text)

    async def _cancel(self, job: Job) -> None:
        """Tell the worker, and wait until it stopped writing the job's part."""
        await self._write({"op": "cancel", "id": job.number})
        with anyio.move_on_after(CANCEL_GRACE):
            await job.finished.wait()
            return
        log.warning("the transfer worker did not stop a cancelled job: killing it")
        job.outcome = {"cancelled": True}
        job.finished.set()  # not sent again: the restart resumes only the others
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            with anyio.move_on_after(5):
                await self.process.wait()

    async def _stop_worker(self) -> None:
        """EOF on its stdin: it saves what its jobs wrote and leaves; else it is killed."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await process.stdin.aclose()
        with anyio.move_on_after(3):
            await process.wait()
        if process.returncode is None:
            process.kill()
        await process.aclose()


async def _lines(stream: ByteReceiveStream) -> AsyncIterator[bytes]:
    """The worker's lines until it closes the stream (a partial last line is dropped)."""
    reader = BufferedByteReceiveStream(stream)
    with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead):
        while True:
            yield await reader.receive_until(b"\n", MAX_LINE)


def _result(outcome: dict[str, Any]) -> str:
    if "done" in outcome:
        return str(outcome["done"])
    error = outcome.get("error")
    if error is None:  # the worker confirmed a cancel we did not ask for
        raise NetworkError("the transfer was stopped")
    name, message = error.get("name"), error.get("message", "")
    if (cls := _ERRORS.get(name)) is not None:
        raised: ModelManagerError = cls.__new__(cls)
        ModelManagerError.__init__(raised, message, **error.get("data", {}))
        raise raised
    if name == "OSError":
        code = error.get("errno") or errno.EIO
        raise OSError(code, message)
    raise RuntimeError(f"transfer worker: {name}: {message}")
