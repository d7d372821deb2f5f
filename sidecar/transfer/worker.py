"""The transfer worker: the child process that moves bytes (HTTP bodies, writes at
offsets, hashing, fsync) at background priority, so the process the app started keeps
its CPU and its GIL for answers. It holds no state beyond its jobs.

One JSON object a line each way (``sidecar.transfer.client`` is the other end):
  in:  {"op": "hello", "settings": {...}}            first, once
       {"op": "fetch", "id": N, "urls": [...], "part": P, "size": S|null, "sha256": H|null,
        "root": HOME, "label": TEXT, "pieceSize": P?, "pieces": [SHA256, ...]?}
       {"op": "cancel", "id": N}
       {"op": "limits", "rate": B|null, "maxConnections": C}
       {"op": "proxy", "proxy": URL|null}
  out: {"id": N, "progress": BYTES_ON_DISK} | {"id": N, "size": FULL_SIZE}
       {"id": N, "notice": {"code": C, "message": M}}   a problem got over (bad piece)
       {"id": N, "done": SHA256} | {"id": N, "error": {...}} | {"id": N, "cancelled": true}
Logs go to stderr, which the parent reads into its own log.

It dies with its parent: PR_SET_PDEATHSIG on Linux, and everywhere at EOF on stdin.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import IO, Any

import anyio

from sidecar.config import Settings
from sidecar.errors import InsufficientDiskSpace, ModelManagerError
from sidecar.store.diskspace import disk_full_cause, free_bytes
from sidecar.transfer.fetch import discard_part
from sidecar.transfer.network import Network
from sidecar.transfer.priority import run_in_background
from sidecar.transfer.ratelimit import RateLimiter
from sidecar.transfer.retry import download_file
from sidecar.transfer.segmented import Limits
from sidecar.transfer.target import FileTarget, Pieces

log = logging.getLogger("sidecar.transfer.worker")

PROGRESS_EVERY = 0.05  # seconds between progress lines: the parent's loop sees ~20 a second


class Worker:
    def __init__(self, hello: dict[str, Any], protocol: IO[bytes]) -> None:
        config = hello["settings"]
        self.protocol = protocol
        self.settings = Settings(
            home=Path(config["home"]),
            repositories=tuple(config["repositories"]),
            token=config.get("token"),
            retries_per_file=config["retries"],
            stall_timeout=config["stallTimeout"],
            network_patience=config["networkPatience"],
            min_speed=config["minSpeed"],
            min_speed_window=config["minSpeedWindow"],
        )
        ca_bundle = Path(config["caBundle"]) if config.get("caBundle") else None
        self.network = Network(config.get("proxy"), ca_bundle, config["maxConnectionsPerHost"])
        self.limits = Limits(
            max_connections=config["maxConnectionsPerFile"],
            connections=anyio.CapacityLimiter(config["maxConnections"]),
            rate=RateLimiter(config.get("rate")),
        )
        self.jobs: dict[int, anyio.CancelScope] = {}
        self.progress: dict[int, int] = {}  # latest, not yet sent

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        self.protocol.write(data)

    async def run(self, group: anyio.abc.TaskGroup) -> None:
        group.start_soon(self._send_progress)
        stdin = anyio.wrap_file(sys.stdin.buffer)
        while line := await stdin.readline():
            message = json.loads(line)
            op = message.get("op")
            if op == "fetch":
                group.start_soon(self._fetch, message)
            elif op == "cancel" and (scope := self.jobs.get(message["id"])) is not None:
                scope.cancel()
            elif op == "limits":
                self.limits.rate.set_rate(message.get("rate") or None)
                self.limits.max_connections = message["maxConnections"]
            elif op == "proxy":
                self.network.set_proxy(message.get("proxy"))
        log.debug("stdin closed: the parent is gone")
        group.cancel_scope.cancel()

    async def _fetch(self, job: dict[str, Any]) -> None:
        number: int = job["id"]
        pieces = Pieces(job["pieceSize"], tuple(job["pieces"])) if job.get("pieces") else None
        target = FileTarget(
            Path(job["part"]), job["size"], job["sha256"], pieces, job.get("label") or ""
        )

        def progress(size: int) -> None:
            self.progress[number] = size

        def size_learned(size: int) -> None:
            self._flush(number)
            self.send({"id": number, "size": size})

        def notice(code: str, message: str) -> None:
            self.send({"id": number, "notice": {"code": code, "message": message}})

        outcome: dict[str, Any] = {"cancelled": True}
        with anyio.CancelScope() as scope:
            self.jobs[number] = scope
            try:
                digest = await download_file(
                    self.network, job["urls"], target, self.settings, progress,
                    self.limits, size_learned, notice,
                )  # fmt: skip
                outcome = {"done": digest}
            except Exception as exc:
                outcome = self._failure(exc, target, Path(job["root"]))
        del self.jobs[number]
        self._flush(number)
        self.send({"id": number, **outcome})

    @staticmethod
    def _failure(exc: Exception, target: FileTarget, root: Path) -> dict[str, Any]:
        """A failure as the parent re-raises it. A full disk is said as such, whatever
        error it caused next, and the part is freed: kept, it would keep the disk full
        for every other program (the download starts over once there is room)."""
        if (full := disk_full_cause(exc)) is not None:
            held = part_bytes(target)
            discard_part(target)
            message = (
                f"the disk under {root} is full ({full.strerror}); the partial download "
                f"({held} bytes) was removed to free them: make room and install again"
            )
            data = {"reason": "no_space", "freedBytes": held, "freeBytes": free_bytes(root)}
            return {"error": {"name": InsufficientDiskSpace.name, "message": message, "data": data}}
        if isinstance(exc, ModelManagerError):
            return {"error": {"name": exc.name, "message": exc.message, "data": exc.extra}}
        if isinstance(exc, OSError):
            return {"error": {"name": "OSError", "errno": exc.errno, "message": str(exc)}}
        log.error("transfer of %s failed", target.part.name, exc_info=exc)
        return {"error": {"name": "internal", "message": type(exc).__name__}}

    def _flush(self, number: int) -> None:
        size = self.progress.pop(number, None)
        if size is not None:
            self.send({"id": number, "progress": size})

    async def _send_progress(self) -> None:
        while True:
            await anyio.sleep(PROGRESS_EVERY)
            for number in list(self.progress):
                self._flush(number)


def part_bytes(target: FileTarget) -> int:
    """What the part takes on the disk (a segmented part is sparse until filled)."""
    try:
        info = target.part.stat()
    except OSError:
        return 0
    return min(info.st_size, getattr(info, "st_blocks", 0) * 512 or info.st_size)


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills us when the parent's thread that started us ends (its
    event loop's, which lives as long as it does); if it is gone already, leave."""
    if sys.platform == "linux":
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


async def _main(protocol: IO[bytes]) -> None:
    hello = json.loads(await anyio.wrap_file(sys.stdin.buffer).readline())
    logging.getLogger().setLevel(hello["settings"]["logLevel"])
    worker = Worker(hello, protocol)
    try:
        async with anyio.create_task_group() as group:
            await worker.run(group)
    finally:
        worker.network.close()


def main() -> None:
    _die_with_parent(int(sys.argv[1]))
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")  # as the sidecar's
    run_in_background()  # before any thread, so every thread inherits it
    logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)  # a line per request otherwise
    # stdout is the protocol: keep a private handle, and send fd 1 (a stray print, a C
    # library) to stderr.
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(_main, protocol)
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
