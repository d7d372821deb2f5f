"""The model library's daemon: makes its parts (the first answer's at once, the rest
when first used), runs them as a service in the app's task group, and offers the task
methods the RPC layer calls. A task's life is ``sidecar.core.lifecycle``'s; what each
task method does, ``sidecar.core.task_methods``'s."""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from sidecar.core import task_methods
from sidecar.core.eviction import StoreKeeper
from sidecar.core.hooks import DownloadHooks, NoHooks, Notify
from sidecar.core.later import build_install_models, import_the_rest
from sidecar.core.library import Library
from sidecar.core.lifecycle import TaskLifecycle
from sidecar.core.service import load_tasks, prepare_home, progress_ticker, watch_registry
from sidecar.core.tasks import TaskRuntime, TaskStore, UrlSource
from sidecar.store.layout import HomeLayout
from sidecar.store.registry import Registry
from sidecar.wire import InstallResult

if TYPE_CHECKING:  # imported when first used: the first answer needs none of them
    from sidecar.config import Settings
    from sidecar.core.catalog import Catalog
    from sidecar.core.ranking import RankingSource
    from sidecar.core.relocation import Ownership
    from sidecar.core.runner import TaskRunner
    from sidecar.transfer.client import TransferClient
    from sidecar.transfer.http import JsonClient
    from sidecar.transfer.network import Network

log = logging.getLogger(__name__)

COMPLETE_AFTER = 1.0  # the rest of the start-up, when no answer or method asked for it sooner


class Manager:
    def __init__(
        self,
        settings: Settings,
        client: JsonClient,
        network: Network,
        transfer: TransferClient,
        notify: Notify,
        hooks: DownloadHooks | None = None,
    ) -> None:
        self.settings = settings
        self.network = network
        self.transfer = transfer
        self.client = client
        self.layout = HomeLayout(settings.home)
        self.registry = Registry(self.layout)
        self.store = TaskStore(self.layout)
        self.notify = notify
        self.hooks: DownloadHooks = hooks or NoHooks()
        self._own_hooks = hooks is None  # those of installed packages, read in `complete`
        # Set once `complete` has run: after the first answer (getModelPath needs only
        # the registry, the tasks and last-used), or when a method needs the rest.
        self.ready = anyio.Event()
        self._wanted = anyio.Event()
        self.tasks: dict[str, TaskRuntime] = {}
        self.active: dict[tuple[str, str], TaskRuntime] = {}  # unfinished, by (model, version)
        self.failed: set[tuple[str, str]] = set()
        # (model, version) of a requirement → the model@version whose install asked for it.
        self.required_by: dict[tuple[str, str], str] = {}
        self.library = Library(
            settings, self.layout, self.registry, lambda: self.catalog, notify, self.active,
            self.failed,
        )  # fmt: skip
        self.keeper = StoreKeeper(self)  # disk usage, pins, leases, quota, last used
        self.lifecycle = TaskLifecycle(self)  # states, start, run, fail, stop
        self.moving = False  # moveStore at work (sidecar.core.relocation): no task starts
        self.ownership: Ownership | None = None  # the home's lock and endpoint, if ours

    # The parts the first answer does not need, made when first used (after `ready`).

    @cached_property
    def catalog(self) -> Catalog:
        from sidecar.core.catalog import Catalog

        return Catalog(self.settings, self.layout, self.client)

    @cached_property
    def ranking(self) -> RankingSource:
        from sidecar.core.ranking import RankingSource

        return RankingSource(self.settings, self.layout, self.client)

    @cached_property
    def runner(self) -> TaskRunner:
        from sidecar.core.runner import TaskRunner

        return TaskRunner(
            self.settings, self.layout, self.registry, self.transfer, self.lifecycle.set_state,
            self.keeper.make_room_for,
        )  # fmt: skip

    # --- service -------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Started once getModelPath can answer; the rest (`complete`) follows."""
        await anyio.to_thread.run_sync(prepare_home, self)
        async with anyio.create_task_group() as group:
            self.lifecycle.group = group
            for persisted, on_disk in await anyio.to_thread.run_sync(load_tasks, self):
                self.lifecycle.resume_persisted(persisted, on_disk)
            group.start_soon(progress_ticker, self)
            group.start_soon(watch_registry, self)
            group.start_soon(self.keeper.last_used.serve)
            task_status.started()
            with anyio.move_on_after(COMPLETE_AFTER):
                await self._wanted.wait()
            await self.complete()

    def complete_soon(self) -> None:
        """The first answer is out (or a method waits): load the rest now."""
        self._wanted.set()

    async def until_ready(self) -> None:
        self._wanted.set()
        await self.ready.wait()

    async def complete(self) -> None:
        """What the methods other than getModelPath need: their modules and
        jsonrpcserver's top level (imported in a thread: the loop keeps answering), the
        catalog's cache, the installed hooks (reading package metadata takes tens of
        milliseconds)."""
        await anyio.to_thread.run_sync(import_the_rest)
        await self.catalog.load_cache()
        if self._own_hooks:
            from sidecar.core.hooks import installed_hooks

            self.hooks = await anyio.to_thread.run_sync(installed_hooks)
        self.ready.set()
        # The first install of the session then starts at once.
        await anyio.to_thread.run_sync(build_install_models)
        try:
            await self.client.warm_up()
        except Exception as exc:  # that call will say what is wrong
            log.debug("the JSON client is made at its first call: %s", exc)

    # --- the task methods (sidecar.core.task_methods) ---------------------------------

    async def install(
        self, model_id: str, version: str | None, dependencies: bool, repair: bool = False
    ) -> InstallResult:
        return await task_methods.install(self, model_id, version, dependencies, repair)

    async def install_url(self, source: UrlSource, model_id: str, version: str) -> InstallResult:
        return await task_methods.install_url(self, source, model_id, version)

    def get_task(self, task_id: str) -> TaskRuntime:
        return task_methods.get_task(self, task_id)

    def pause(self, task_id: str) -> TaskRuntime:
        return task_methods.pause(self, task_id)

    def resume(self, task_id: str) -> TaskRuntime:
        return task_methods.resume(self, task_id)

    async def cancel(self, task_id: str) -> TaskRuntime:
        return await task_methods.cancel(self, task_id)
