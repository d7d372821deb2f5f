"""The owner's hold on its home: the lock (``sidecar.engine.ownership``) and the endpoint
other processes attach at, both following the home when moveStore moves it.

A lock per folder, claimed before the switch: ``claim`` (from the moving thread, just
before ``moved-to.json`` is written) locks the new home's own ``engine.lock``, listens at
the new home's endpoint and writes it there; ``settle`` then closes the old listener and
lets the old lock go once the switch is made, or undoes the claim when it was not. So
whoever the forwarding record sends to the new folder finds an owner listening there,
and a kill at any point leaves locks the OS released: the old home whole until the
switch, the new one after. Carrying the lock file along did neither: a rename moved
the locked file with the old socket still written in it, and a copy made an unlocked
copy that a second engine took.

Attached connections run in a task group of their own: they outlive the listener that
accepted them."""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread
from anyio.abc import TaskStatus

from sidecar.engine.endpoint import Handler, Listener, listen
from sidecar.engine.ownership import EndpointUnsafe, EngineLock, endpoint_for, fallback_endpoint
from sidecar.errors import HomeUnavailable, InvalidState, PermissionDenied

log = logging.getLogger(__name__)


@dataclass
class _Held:
    lock: EngineLock
    listener: Listener | None = None
    scope: anyio.CancelScope | None = None


class Ownership:
    """What ``_run_engine`` holds while it owns a home (see the module's docstring)."""

    def __init__(self, lock: EngineLock) -> None:
        self._held = _Held(lock)
        self._claimed: _Held | None = None  # the target's, while the home moves
        self._group: anyio.abc.TaskGroup | None = None
        self._handler: Handler | None = None
        self._worker_pid: int | None = None
        self._mutex = threading.Lock()  # the heartbeat's thread and the move's

    @property
    def lock(self) -> EngineLock:
        return self._held.lock

    async def serve(self, handler: Handler, *, task_status: TaskStatus[None]) -> None:
        """Listen, then accept attached clients until cancelled."""
        try:
            async with anyio.create_task_group() as group:
                self._group, self._handler = group, handler
                await self._listen(self._held)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                for held in (self._claimed, self._held):
                    if held is not None:
                        await _close(held)

    def refresh(self, worker_pid: int | None) -> None:
        """The heartbeat, in every lock we hold (blocking)."""
        with self._mutex:
            self._worker_pid = worker_pid
            for held in (self._held, self._claimed):
                if held is not None:
                    held.lock.refresh(worker_pid)

    def release(self) -> None:
        """Last, once our tasks stopped writing (blocking)."""
        with self._mutex:
            for held in (self._claimed, self._held):
                if held is not None:
                    held.lock.release()

    # --- moveStore ------------------------------------------------------------------

    def claim(self, home: Path) -> None:
        """Own ``home`` too, and listen at its endpoint: from the moving thread, before
        the switch. A refusal (another process owns it) stops the move unswitched."""
        lock = EngineLock(home)
        try:
            owned = lock.try_acquire(lambda: endpoint_for(home))
        except OSError as exc:
            lock.release()
            then = f"the model home is still {self.lock.home}"
            if isinstance(exc, PermissionError):
                raise PermissionDenied(
                    f"cannot write {lock.path}: permission denied; {then}", path=str(home)
                ) from exc
            raise HomeUnavailable(f"cannot use {home}: {exc}; {then}", path=str(home)) from exc
        if not owned:
            raise InvalidState(
                f"another model manager uses {home} as its model home: stop it, then move "
                "the home there",
                reason="target_not_empty",
                path=str(home),
            )
        held = _Held(lock)
        try:
            anyio.from_thread.run(self._listen, held)
        except BaseException:  # the move stops here: nothing of the target's is kept
            anyio.from_thread.run(_close, held)
            lock.release()
            raise
        with self._mutex:
            lock.refresh(self._worker_pid)
            self._claimed = held
        log.info("this process owns %s too, listening at %s", home, lock.endpoint)

    async def settle(self, switched: bool) -> None:
        """After the move: keep the new home's hold and drop the old one (``switched``),
        or drop the claim."""
        with self._mutex:
            dropped, self._claimed = self._claimed, None
            if dropped is not None and switched:
                dropped, self._held = self._held, dropped
        if dropped is None:
            return
        with anyio.CancelScope(shield=True):
            await _close(dropped)
            await anyio.to_thread.run_sync(dropped.lock.release)
        log.info("no longer the owner of %s", dropped.lock.home)

    # --- listening ------------------------------------------------------------------

    async def _listen(self, held: _Held) -> None:
        """Listen at the lock's endpoint, else at the fallback one (then written in the
        lock); without either, other processes cannot attach (logged)."""
        lock = held.lock
        for endpoint in (lock.endpoint, None):
            try:
                endpoint = endpoint or fallback_endpoint(lock.home)
                listener = await listen(endpoint)
            except (OSError, EndpointUnsafe) as exc:
                log.warning("cannot listen at %s: %s", endpoint, exc)
                continue
            if endpoint != lock.endpoint:
                await anyio.to_thread.run_sync(lock.announce, endpoint)
            held.listener = listener
            assert self._group is not None
            held.scope = await self._group.start(self._accept, listener)
            return
        log.error("no endpoint: other processes on %s cannot attach to this one", lock.home)

    async def _accept(
        self, listener: Listener, *, task_status: TaskStatus[anyio.CancelScope]
    ) -> None:
        assert self._group is not None and self._handler is not None
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            try:
                await listener.serve(self._handler, self._group)
            except OSError as exc:  # out of descriptors, say: stdio still serves
                log.error("stopped accepting attached clients: %s", exc)


async def _close(held: _Held) -> None:
    """Stop accepting and close the listener; its connections go on."""
    if held.scope is not None:
        held.scope.cancel()
    listener, held.listener = held.listener, None
    if listener is not None:
        with contextlib.suppress(OSError):
            await listener.aclose()
