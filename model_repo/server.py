"""The reference repository server: the published tree over HTTP, plus the usage API.

Files are served by Starlette's ``StaticFiles`` (Range, ETag, Last-Modified, HEAD,
conditional requests, and symlinks resolved and kept inside the tree); this module
adds what a static server does not: refusing traversal syntax outright with a JSON
error, the optional bearer token, and the SQLite-backed usage ranking.

    GET|HEAD /api/models                      → <storage>/api/models.json
    GET|HEAD /api/models/{id}                 → <storage>/api/models/{id}.json
    GET|HEAD /storage/models/{id}/{v}/{path}  → <storage>/models/{id}/{v}/{path}
    GET|HEAD /api/signatures/models           → <storage>/api/signatures/models.sig
    GET|HEAD /api/signatures/models/{id}      → <storage>/api/signatures/models/{id}.sig
    POST     /api/model-usage/events          {model_id, kind}  (rate-limited per address)
    GET      /api/model-usage/ranking         [{model_id, request_count, rank}]

With an ``s3://`` storage (``--redirect s3``) the catalog is read from the object store
and file GETs are answered with a 302 to a presigned URL (``model_repo.redirect``).
The usage store is SQLite (a path) or PostgreSQL (a ``postgresql://`` URL).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote

import anyio
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_repo.layout import StorageLayout
from model_repo.ratelimit import RateLimiter
from model_repo.redirect import DEFAULT_EXPIRY, S3Redirects
from model_repo.s3 import S3Location
from model_repo.usage import EVENT_KINDS, UsageBackend, UsageEvent, open_usage_store
from sidecar.errors import UnsafeManifest
from sidecar.manifest import check_relative_path, check_safe_name

# Versions are immutable, so their files may be cached forever by a CDN; the catalog
# changes on every publish, so caches must revalidate it (cheap with ETag).
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
MAX_EVENT_BYTES = 16 * 1024
# Per client address and server process: an agent reports a handful of events a
# minute; a burst covers a node catching up after an outage.
EVENT_RATE = 20.0
EVENT_BURST = 200.0


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def unsafe_path_reason(path: str, raw_path: bytes | None) -> str | None:
    """Why a request path is refused before any filesystem lookup, or None.

    Checked on the decoded path and once more decoded, so ``..``, ``%2e%2e`` and
    ``%252e%252e`` are all refused whatever a proxy in front does with them."""
    candidates = [path, unquote(path)]
    if raw_path is not None:
        candidates.append(unquote(raw_path.decode("latin-1")))
    for candidate in candidates:
        if "\\" in candidate or "\x00" in candidate:
            return "backslash or NUL in path"
        segments = candidate.split("/")[1:]
        if any(s in {".", ".."} for s in segments):
            return "dot segment in path"
        if any(s == "" for s in segments[:-1]):
            return "empty segment (absolute path) in path"
    return None


class Guard:
    """Refuses traversal syntax (400) and, with a token, unauthenticated repository reads."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        reason = unsafe_path_reason(path, scope.get("raw_path"))
        if reason is not None:
            response = error_response(400, "UNSAFE_PATH", f"refused: {reason}")
            return await response(scope, receive, send)
        if self.token and not path.startswith("/api/model-usage/"):
            # The usage API belongs to the scheduler side, which the sidecar calls
            # without the repository token; only the repository itself is protected.
            request = Request(scope)
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                response = error_response(
                    401, "UNAUTHORIZED", "a valid bearer token is required",
                    {"WWW-Authenticate": 'Bearer realm="model-repository"'},
                )  # fmt: skip
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


class Throttle:
    """Slows file bodies to ``bytes_per_second`` per response (demos, progress tests)."""

    def __init__(self, app: ASGIApp, bytes_per_second: float) -> None:
        self.app = app
        self.rate = bytes_per_second

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/storage/"):
            return await self.app(scope, receive, send)

        async def slow_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body":
                await anyio.sleep(len(message.get("body", b"")) / self.rate)

        await self.app(scope, receive, slow_send)


def _status_code_name(status: int) -> str:
    try:
        return HTTPStatus(status).name
    except ValueError:
        return "HTTP_ERROR"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail or HTTPStatus(exc.status_code).phrase
    return error_response(
        exc.status_code, _status_code_name(exc.status_code), message, dict(exc.headers or {})
    )


Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(
    storage: Path | S3Location,
    *,
    token: str | None = None,
    usage_db: str | Path | None = None,
    bytes_per_second: float | None = None,
    presign_expiry: int = DEFAULT_EXPIRY,
    event_rate: float = EVENT_RATE,
    event_burst: float = EVENT_BURST,
) -> ASGIApp:
    if isinstance(storage, S3Location):
        if usage_db is None:
            raise ValueError("with s3:// storage, give --usage-db (a SQLite path or postgresql://)")
        usage = open_usage_store(usage_db)
        redirects = S3Redirects(storage, presign_expiry)
        catalog_list, catalog_entry, storage_file = _s3_routes(redirects)
        signatures = _s3_signature_routes(redirects)
    else:
        layout = StorageLayout(storage.resolve())
        usage = open_usage_store(usage_db or layout.root / "usage.sqlite3")
        catalog_list, catalog_entry, storage_file = _tree_routes(layout)
        signatures = _tree_signature_routes(layout)
    limiter = RateLimiter(event_rate, event_burst) if event_rate > 0 else None
    return _assemble(
        catalog_list, catalog_entry, storage_file, _usage_routes(usage, limiter), token,
        bytes_per_second, signatures,
    )  # fmt: skip


def _s3_signature_routes(redirects: S3Redirects) -> tuple[Endpoint, Endpoint]:
    location = redirects.store.location

    async def list_signature(request: Request) -> Response:
        missing = error_response(404, "NOT_FOUND", "the catalog is not signed")
        return await redirects.catalog(request, location.signature_key(), missing)

    async def entry_signature(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        try:
            key = location.signature_key(model_id)
        except UnsafeManifest as exc:
            return error_response(400, "UNSAFE_PATH", exc.message)
        missing = error_response(404, "NOT_FOUND", f"no signature for {model_id!r}")
        return await redirects.catalog(request, key, missing)

    return list_signature, entry_signature


def _tree_signature_routes(layout: StorageLayout) -> tuple[Endpoint, Endpoint]:
    files = StaticFiles(directory=layout.api, check_dir=False)

    async def serve(name: str, request: Request) -> Response:
        try:
            response = await files.get_response(name, request.scope)
        except HTTPException as exc:
            if exc.status_code == 404:
                return error_response(404, "NOT_FOUND", "not signed")
            raise
        # A signature changes with its document: caches revalidate both alike.
        response.headers["Cache-Control"] = REVALIDATE
        response.headers["Content-Type"] = "application/json"
        return response

    async def list_signature(request: Request) -> Response:
        return await serve("signatures/models.sig", request)

    async def entry_signature(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        try:
            check_safe_name(model_id, "model id")
        except UnsafeManifest as exc:
            return error_response(400, "UNSAFE_PATH", exc.message)
        return await serve(f"signatures/models/{model_id}.sig", request)

    return list_signature, entry_signature


def _s3_routes(redirects: S3Redirects) -> tuple[Endpoint, Endpoint, Endpoint]:
    location = redirects.store.location

    async def catalog_list(request: Request) -> Response:
        missing = error_response(404, "NOT_FOUND", "nothing is published yet")
        return await redirects.catalog(request, location.list_key, missing)

    async def catalog_entry(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        try:
            check_safe_name(model_id, "model id")
        except UnsafeManifest as exc:
            return error_response(400, "UNSAFE_PATH", exc.message)
        missing = error_response(404, "MODEL_NOT_FOUND", f"no model {model_id!r}")
        return await redirects.catalog(request, location.entry_key(model_id), missing)

    async def storage_file(request: Request) -> Response:
        model_id, version, path = (request.path_params[k] for k in ("model_id", "version", "path"))
        try:
            check_safe_name(model_id, "model id")
            check_safe_name(version, "version")
            check_relative_path(path)
        except UnsafeManifest as exc:
            return error_response(400, "UNSAFE_PATH", exc.message)
        return redirects.file(request, model_id, version, path)

    return catalog_list, catalog_entry, storage_file


def _tree_routes(layout: StorageLayout) -> tuple[Endpoint, Endpoint, Endpoint]:
    # check_dir=False: the tree may be published after the server starts.
    api_files = StaticFiles(directory=layout.api, check_dir=False)
    model_files = StaticFiles(directory=layout.models, check_dir=False)

    async def catalog_list(request: Request) -> Response:
        response = await api_files.get_response("models.json", request.scope)
        response.headers["Cache-Control"] = REVALIDATE
        return response

    async def catalog_entry(request: Request) -> Response:
        model_id = request.path_params["model_id"]
        try:
            check_safe_name(model_id, "model id")
        except UnsafeManifest as exc:
            return error_response(400, "UNSAFE_PATH", exc.message)
        try:
            response = await api_files.get_response(f"models/{model_id}.json", request.scope)
        except HTTPException as exc:
            if exc.status_code == 404:
                return error_response(404, "MODEL_NOT_FOUND", f"no model {model_id!r}")
            raise
        response.headers["Cache-Control"] = REVALIDATE
        return response

    async def storage_file(request: Request) -> Response:
        model_id, version, path = (request.path_params[k] for k in ("model_id", "version", "path"))
        try:
            check_safe_name(model_id, "model id")
            check_safe_name(version, "version")
            check_relative_path(path)
        except UnsafeManifest as exc:
            return error_response(400, "UNSAFE_PATH", exc.message)
        # StaticFiles resolves symlinks and answers 404 for anything outside the tree.
        response = await model_files.get_response(f"{model_id}/{version}/{path}", request.scope)
        response.headers["Cache-Control"] = IMMUTABLE
        return response

    return catalog_list, catalog_entry, storage_file


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _usage_routes(usage: UsageBackend, limiter: RateLimiter | None) -> tuple[Endpoint, Endpoint]:
    # Worker threads of their own for ranking reads: not queued behind 40 event writes.
    readers = anyio.CapacityLimiter(4)

    async def record_event(request: Request) -> Response:
        if limiter is not None and (wait := limiter.allow(_client_address(request))):
            return error_response(
                429, "RATE_LIMITED", "too many usage events from this address; retry later",
                {"Retry-After": str(max(1, round(wait)))},
            )  # fmt: skip
        body = await request.body()
        if len(body) > MAX_EVENT_BYTES:
            return error_response(413, "TOO_LARGE", "event body too large")
        try:
            event = UsageEvent.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            if any(e["loc"] == ("kind",) for e in exc.errors()):
                problems += f" (known kinds: {', '.join(EVENT_KINDS)})"
            return error_response(400, "INVALID_EVENT", problems)
        await anyio.to_thread.run_sync(usage.record, event)
        return JSONResponse({"recorded": event.model_dump()}, status_code=201)

    async def ranking(request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return error_response(400, "INVALID_LIMIT", "limit must be an integer in 1..1000")
        entries = await anyio.to_thread.run_sync(usage.ranking, limit, limiter=readers)
        return Response(
            json.dumps([e.model_dump() for e in entries]), media_type="application/json"
        )

    return record_event, ranking


def _assemble(
    catalog_list: Endpoint,
    catalog_entry: Endpoint,
    storage_file: Endpoint,
    usage: tuple[Endpoint, Endpoint],
    token: str | None,
    bytes_per_second: float | None,
    signatures: tuple[Endpoint, Endpoint],
) -> ASGIApp:
    record_event, ranking = usage
    list_signature, entry_signature = signatures
    read = ["GET", "HEAD"]
    app = Starlette(
        routes=[
            Route("/api/models", catalog_list, methods=read),
            Route("/api/models/{model_id}", catalog_entry, methods=read),
            Route("/storage/models/{model_id}/{version}/{path:path}", storage_file, methods=read),
            Route("/api/model-usage/events", record_event, methods=["POST"]),
            Route("/api/model-usage/ranking", ranking, methods=read),
            Route("/api/signatures/models", list_signature, methods=read),
            Route("/api/signatures/models/{model_id}", entry_signature, methods=read),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    wrapped: ASGIApp = Guard(app, token)
    if bytes_per_second:
        wrapped = Throttle(wrapped, bytes_per_second)
    return wrapped
