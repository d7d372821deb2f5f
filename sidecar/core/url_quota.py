"""The store quota for a plain URL's file (installUrl), whose size is known only once
its server answers (or once it all arrived, when the server did not say): checked then,
beside the transfer, which reports the size and writes on. The bytes that arrive while
the check runs (milliseconds) are the only ones that may pass the quota, until the
check evicts or removes them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from sidecar.core.tasks import TaskRuntime
from sidecar.errors import InsufficientDiskSpace
from sidecar.store.placement import discard_parts

# StoreKeeper.make_room_for; its flag False: a refused task's part is removed by the caller.
MakeRoom = Callable[[TaskRuntime, bool], Awaitable[None]]


async def within_quota(
    make_room: MakeRoom,
    task: TaskRuntime,
    fetching: Awaitable[str],
    sized: anyio.Event,
    part: Path,
    progress: Callable[[int], None],
) -> str:
    """``fetching``'s digest once the quota check that ``sized`` starts (evicting the
    least recently used versions, or refusing) has passed: the install waits for it,
    however early the file arrived. Refused, the fetch is stopped (the worker confirms
    it stopped writing) and what arrived is removed, under the part lock the caller
    holds: the store stays within its quota, and a failed plain URL's task is not kept
    to resume after a restart anyway (its URL may hold a secret)."""
    refused = False

    async def check() -> None:
        nonlocal refused
        await sized.wait()
        try:
            await make_room(task, False)
        except InsufficientDiskSpace:
            refused = True
            raise

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(check)
            digest = await fetching
    except BaseException:
        if refused:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(discard_parts, [part])
            progress(0)
        raise
    return digest
