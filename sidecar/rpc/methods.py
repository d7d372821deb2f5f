"""Thin typed handlers: validate params with the wire models, call the manager,
and translate the sidecar's errors into JSON-RPC errors (the one place that does)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from jsonrpcserver.exceptions import JsonRpcError
from jsonrpcserver.result import Error, Result, Success
from pydantic import BaseModel, ValidationError

from sidecar import PROTOCOL_VERSION, __version__
from sidecar.config import Settings
from sidecar.core.leases import STDIO
from sidecar.core.manager import Manager
from sidecar.core.tasks import UrlSource
from sidecar.errors import ModelManagerError, UnsafeManifest
from sidecar.manifest import check_safe_name
from sidecar.transfer.network import redact_proxy
from sidecar.wire import (
    GetModelPathParams,
    InfoResult,
    InstallParams,
    InstallUrlParams,
    ListModelsParams,
    ListTasksResult,
    ModelRefParams,
    NetworkResult,
    NoParams,
    RankingItem,
    RankingParams,
    RankingResult,
    SetLimitsParams,
    SetNetworkParams,
    ShutdownResult,
    SignaturePolicy,
    TaskIdParams,
    WireModel,
)

P = TypeVar("P", bound=BaseModel)
# Answered from what the start-up loads before serving; every other method waits for
# the rest (Manager.complete), which follows the first answer.
ANSWERED_BEFORE_READY = frozenset({"getModelPath", "getInfo", "releaseModel", "shutdown"})
Handler = Callable[..., Awaitable[Result]]
SyncHandler = Callable[..., Result]


def _validate(params_model: type[P], raw: dict[str, Any]) -> P | Result:
    try:
        return params_model.model_validate(raw)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(map(str, e["loc"])) or "params", "problem": e["msg"]}
            for e in exc.errors()
        ]
        # The detail in the message too: a client that shows only the message still
        # tells the user which field is wrong and how.
        shown = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
        return Error(-32602, f"Invalid params: {shown}"[:1000], problems)


def wire_error(exc: ModelManagerError, params: BaseModel | None = None) -> JsonRpcError:
    model_id = getattr(params, "model_id", None)
    if isinstance(model_id, str):  # a call about one model: its error's data names it
        version = getattr(params, "version", None)
        exc.concerning(model_id, version if isinstance(version, str) else None)
    return JsonRpcError(exc.code, exc.message, exc.to_data())


# No functools.wraps below: jsonrpcserver binds params against the wrapper's own
# signature (**raw), and our pydantic models do the checking.


def sync_handler(
    params_model: type[P],
) -> Callable[[Callable[[P], dict[str, Any]]], SyncHandler]:
    """A method that only reads memory: a plain function returning its result as on
    the wire."""

    def decorate(function: Callable[[P], dict[str, Any]]) -> SyncHandler:
        def wrapper(**raw: Any) -> Result:
            params = _validate(params_model, raw)
            if not isinstance(params, params_model):
                return params
            try:
                return Success(function(params))
            except ModelManagerError as exc:
                raise wire_error(exc, params) from exc

        wrapper.__name__ = function.__name__
        return wrapper

    return decorate


def handler(params_model: type[P]) -> Callable[[Callable[[P], Awaitable[WireModel]]], Handler]:
    def decorate(function: Callable[[P], Awaitable[WireModel]]) -> Handler:
        async def wrapper(**raw: Any) -> Result:
            params = _validate(params_model, raw)
            if not isinstance(params, params_model):
                return params
            try:
                result = await function(params)
            except ModelManagerError as exc:
                raise wire_error(exc, params) from exc
            return Success(result.wire())

        wrapper.__name__ = function.__name__
        return wrapper

    return decorate


def _signature_policy(settings: Settings) -> SignaturePolicy:
    key_ids = []
    if settings.trusted_keys:
        # Here: loaded at start only with keys configured (config.py checked them).
        from sidecar.signature import parse_public_key

        key_ids = [parse_public_key(text).key_id for text in settings.trusted_keys]
    return SignaturePolicy(policy=settings.signatures, trusted_key_ids=key_ids)


def build_methods(
    manager: Manager, request_stop: Callable[[], None], client: str = STDIO
) -> dict[str, Handler]:
    # Here, not at the top: these use this module's decorators.
    from sidecar.rpc.home_methods import with_store_methods
    from sidecar.rpc.store_methods import build_store_methods, model_path_answer

    settings = manager.settings

    @handler(NoParams)
    async def get_info(_: NoParams) -> InfoResult:
        return InfoResult(
            version=__version__, protocol_version=PROTOCOL_VERSION,
            pid=os.getpid(), worker_pid=manager.transfer.pid,
            home=str(manager.settings.home), repositories=list(settings.repositories),
            signatures=_signature_policy(settings),
        )  # fmt: skip

    @sync_handler(GetModelPathParams)
    def model_path(p: GetModelPathParams) -> dict[str, Any]:
        return model_path_answer(manager, p, client)

    async def get_model_path(**raw: Any) -> Result:  # memory only: answered on the loop
        return model_path(**raw)

    @handler(InstallParams)
    async def install(p: InstallParams) -> WireModel:
        return await manager.install(p.model_id, p.version, p.dependencies, p.repair)

    @handler(ListModelsParams)
    async def list_models(p: ListModelsParams) -> WireModel:
        return await manager.library.list_models(p.refresh)

    @handler(TaskIdParams)
    async def get_task(p: TaskIdParams) -> WireModel:
        return manager.get_task(p.task_id).snapshot()

    @handler(NoParams)
    async def list_tasks(_: NoParams) -> WireModel:
        return ListTasksResult(tasks=[t.snapshot() for t in manager.tasks.values()])

    @handler(TaskIdParams)
    async def pause(p: TaskIdParams) -> WireModel:
        return manager.pause(p.task_id).snapshot()

    @handler(TaskIdParams)
    async def resume(p: TaskIdParams) -> WireModel:
        return manager.resume(p.task_id).snapshot()

    @handler(TaskIdParams)
    async def cancel(p: TaskIdParams) -> WireModel:
        return (await manager.cancel(p.task_id)).snapshot()

    @handler(ModelRefParams)
    async def remove(p: ModelRefParams) -> WireModel:
        result = await manager.library.remove(p.model_id, p.version)
        for version in result.removed:  # a reinstall starts unused
            manager.keeper.last_used.forget(p.model_id, version)
        return result

    @handler(ModelRefParams)
    async def verify(p: ModelRefParams) -> WireModel:
        return await manager.library.verify(p.model_id, p.version)

    @handler(RankingParams)
    async def ranking(p: RankingParams) -> WireModel:
        cached, stale = await manager.ranking.get(p.refresh)
        items = [
            RankingItem(
                model_id=e.model_id,
                request_count=e.request_count,
                rank=e.rank,
                installed=bool(manager.registry.document.models.get(e.model_id)),
            )
            for e in cached.entries[: p.limit]
        ]
        return RankingResult(items=items, stale=stale, fetched_at=cached.fetched_at)

    @handler(InstallUrlParams)
    async def install_url(p: InstallUrlParams) -> WireModel:
        filename = p.filename or _filename_from_url(p.url)
        _check_http_url(p.url)
        check_safe_name(filename, "filename")
        model_id = check_safe_name(p.model_id or filename.rsplit(".", 1)[0], "modelId")
        sha = p.sha256.lower() if p.sha256 else None
        version = sha[:16] if sha else "url-" + hashlib.sha256(p.url.encode()).hexdigest()[:12]
        source = UrlSource(url=p.url, filename=filename, mode=p.mode, sha256=sha)
        return await manager.install_url(source, model_id, version)

    @handler(SetLimitsParams)
    async def set_limits(p: SetLimitsParams) -> WireModel:
        if p.max_store_bytes is not None:
            manager.keeper.max_store_bytes = p.max_store_bytes
        limits = await manager.runner.set_limits(p)
        return limits.model_copy(update={"max_store_bytes": manager.keeper.max_store_bytes})

    @handler(SetNetworkParams)
    async def set_network(p: SetNetworkParams) -> WireModel:
        manager.network.set_proxy(p.proxy)
        await manager.transfer.set_proxy(p.proxy)
        return NetworkResult(proxy=redact_proxy(manager.network.proxy))

    @handler(NoParams)
    async def shutdown(_: NoParams) -> WireModel:
        request_stop()
        return ShutdownResult(stopping=True)

    methods: dict[str, Handler] = {
        "getInfo": get_info,
        "getModelPath": get_model_path,
        "install": install,
        "listModels": list_models,
        "getTask": get_task,
        "listTasks": list_tasks,
        "pause": pause,
        "resume": resume,
        "cancel": cancel,
        "remove": remove,
        "verify": verify,
        "ranking": ranking,
        "installUrl": install_url,
        "setLimits": set_limits,
        "setNetwork": set_network,
        "shutdown": shutdown,
        **build_store_methods(manager, client),
    }
    every = with_store_methods(manager, methods)
    return {
        name: method if name in ANSWERED_BEFORE_READY else _when_ready(manager, method)
        for name, method in every.items()
    }


def _when_ready(manager: Manager, method: Handler) -> Handler:
    async def waiting(**raw: Any) -> Result:
        await manager.until_ready()
        return await method(**raw)

    waiting.__name__ = method.__name__
    return waiting


def _check_http_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeManifest(f"not a downloadable http(s) URL: {url!r}")


def _filename_from_url(url: str) -> str:
    _check_http_url(url)
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not name:
        raise UnsafeManifest(f"the URL names no file; pass filename: {url!r}")
    return name
