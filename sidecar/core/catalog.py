"""The repository's catalog: fetched from the mirrors in order, cached on disk with a
TTL, so the repository being down never stops the app from listing what it knows."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import anyio

from sidecar.config import Settings
from sidecar.core.signatures import ADVICE, SignatureProblem, Verifier
from sidecar.core.wording import api_suffix_hint, model_not_found, no_repository, origin
from sidecar.errors import (
    ModelNotFound,
    RepositoryUnavailable,
    SignatureInvalid,
    TlsError,
    UnsafeManifest,
)
from sidecar.manifest import CatalogModel, check_safe_name, parse_model
from sidecar.signature import Kind
from sidecar.store.fsutil import atomic_write_json, read_json
from sidecar.store.layout import HomeLayout
from sidecar.transfer.http import JsonClient, SourceFailed, TlsFailed, TransientError, auth_headers

log = logging.getLogger(__name__)

# The catalog or one model's manifest. ~100k files' worth; the memory of a hostile reply
# is a few times this (its text, then its objects; see sidecar.transfer.jsonreply).
MAX_CATALOG_BYTES = 16 * 1024 * 1024


class Catalog:
    def __init__(self, settings: Settings, layout: HomeLayout, client: JsonClient) -> None:
        self.settings = settings
        self.client = client
        self.cache_path = layout.cache / "catalog.json"
        self.models: dict[str, CatalogModel] = {}
        self.fetched_at: float = 0.0
        self.stale = True
        self._refresh_lock = anyio.Lock()
        self.verifier = Verifier(settings, layout)

    async def load_cache(self) -> None:
        try:
            raw = await anyio.to_thread.run_sync(read_json, self.cache_path)
            self.models = _parse_list(raw["models"])
            self.fetched_at = float(raw["fetchedAt"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("catalog cache unreadable, ignoring it: %s", exc)

    def fresh(self) -> bool:
        return not self.stale and time.time() - self.fetched_at < self.settings.catalog_ttl

    async def refresh(self, force: bool = False) -> bool:
        """Fetch the whole catalog; False (and the cache kept) when no mirror answers."""
        async with self._refresh_lock:
            if not force and self.fresh():
                return True
            try:
                self.models = _parse_list(
                    await self._get_json("/api/models", "list the catalog", Signed("catalog"))
                )
            except (RepositoryUnavailable, ModelNotFound, SignatureInvalid) as exc:
                log.warning("catalog refresh failed, using the cache: %s", exc)
                self.stale = True
                # Asked for explicitly, a refused catalog is an answer the app must see;
                # a background refresh keeps listing what is installed and known.
                if force and isinstance(exc, SignatureInvalid):
                    raise
                return False
            self.fetched_at = time.time()
            self.stale = False
            await self._save()
            return True

    async def get_model(self, model_id: str, version: str | None = None) -> CatalogModel:
        """The freshest entry for one model; the cache when the repository is down (never
        when it answered with a refused signature). ``version`` names the one wanted in
        a SIGNATURE_INVALID."""
        check_safe_name(model_id, "modelId")
        try:
            raw = await self._get_json(
                f"/api/models/{quote(model_id, safe='')}",
                f"look up {model_id}",
                Signed("manifest", model_id, version),
            )
        except RepositoryUnavailable as exc:
            cached = self.models.get(model_id)
            if cached is None:
                raise exc.concerning(model_id, None) from None
            log.warning("repository down: using the cached manifest of %s", model_id)
            return cached
        model = parse_model(raw)
        if model.id != model_id:
            raise UnsafeManifest(
                f"asked for {model_id!r}, repository answered {model.id!r}", modelId=model_id
            )
        self.models[model_id] = model
        return model

    async def _get_json(self, path: str, what: str, signed: Signed) -> Any:
        """GET from each mirror in turn; 404 everywhere that answered is MODEL_NOT_FOUND.
        ``what`` says what for in the errors (the user never sees ``path``). A mirror
        whose copy a trusted signature does not vouch for is skipped too; when no mirror
        gives a trusted copy, the first refusal is the error. Offline: no request at all,
        and REPOSITORY_UNAVAILABLE with ``reason: offline``, as when no mirror answers (so
        callers fall back to the cache alike)."""
        model_id = signed.model_id
        data = {"modelId": model_id} if model_id else {}
        if self.settings.offline:
            raise RepositoryUnavailable(
                f"cannot {what}: working offline, the repository is not asked",
                reason="offline",
                **data,
            )
        if not self.settings.repositories:
            raise no_repository(what, model_id)
        problems = []
        not_found = False
        tls: TlsFailed | None = None
        refused: list[SignatureInvalid] = []
        for base in self.settings.repositories:
            url = base + path
            try:
                body = await self._fetch(base, path)
                if body is not None and self.verifier.enabled:
                    body = await self._verified(base, path, body, signed)
            except (TransientError, SourceFailed) as exc:
                if isinstance(exc, TlsFailed):
                    tls = exc
                problems.append(f"{origin(base)}: {_without_url(exc, url)}")
                continue
            except SignatureInvalid as exc:
                refused.append(exc)
                problems.append(f"{origin(base)}: {exc.extra['reason']}")
                continue
            if body is None:
                not_found = True
                problems.append(f"{origin(base)}: not found")
                continue
            return body
        if refused:
            raise refused[0]
        if not_found:
            if model_id is not None:
                raise model_not_found(model_id, self.settings.repositories)
            hint = api_suffix_hint(self.settings.repositories)
            raise ModelNotFound(f"cannot {what}: the repository has no catalog{hint}")
        if tls is not None and len(problems) == 1:
            raise TlsError(tls.host, tls.reason)
        raise RepositoryUnavailable(
            f"cannot {what}: no repository answered ({'; '.join(problems)})",
            reason="offline",  # automatic offline mode: see sidecar.core.offline
            **data,
        )

    async def _fetch(self, base: str, path: str) -> Any:
        url = base + path
        return await self.client.get_json(
            url,
            headers=auth_headers(self.settings, url),
            max_bytes=MAX_CATALOG_BYTES,
            deadline=self.settings.request_deadline,
        )

    async def _verified(self, base: str, path: str, body: Any, signed: Signed) -> Any:
        """``body`` (or a fresher copy) once its signature checks out; SignatureInvalid
        under ``enforce``, a warning under ``warn``."""
        signature_path = path.replace("/api/", "/api/signatures/", 1)
        problem: SignatureProblem | None = None
        # A document and its signature are two files: a publish between our two GETs
        # mismatches them once. A second look after it settles tells that from tampering.
        for attempt in range(2):
            if attempt:
                await anyio.sleep(0.2)
                body = await self._fetch(base, path)
                if body is None:
                    return None
            try:
                envelope = await self._fetch(base, signature_path)
            except (TransientError, SourceFailed) as exc:
                if self.verifier.enforced:
                    raise
                log.warning("signature from %s unreadable (--signatures warn): %s", base, exc)
                return body
            try:
                # A thread: the digest of a large catalog is JSON encoding of all of it.
                checked = await anyio.to_thread.run_sync(
                    self.verifier.check, body, envelope, signed.kind, signed.model_id
                )
                await self.verifier.admit(checked)
                return body
            except SignatureProblem as exc:
                problem = exc
                if not exc.mismatch:
                    break
        assert problem is not None
        host = urlsplit(base).netloc.rpartition("@")[2]
        what = "catalog" if signed.model_id is None else f"manifest of {signed.model_id}"
        message = f"the {what} from {host} {problem.detail}: {ADVICE[problem.reason]}"
        if not self.verifier.enforced:
            log.warning("signature check failed (--signatures warn, used anyway): %s", message)
            return body
        raise SignatureInvalid(
            message,
            reason=problem.reason,
            host=host,
            model_id=signed.model_id,
            version=signed.version,
        )

    async def _save(self) -> None:
        document = {
            "fetchedAt": self.fetched_at,
            "models": [m.model_dump(mode="json") for m in self.models.values()],
        }
        try:
            await anyio.to_thread.run_sync(atomic_write_json, self.cache_path, document)
        except OSError as exc:
            log.warning("cannot cache the catalog: %s", exc)


@dataclass(frozen=True)
class Signed:
    """What a signature must vouch for: the catalog, or one model's manifest."""

    kind: Kind
    model_id: str | None = None
    version: str | None = None  # the version an install asked for, for the error


def _without_url(exc: Exception, url: str) -> str:
    """The transport's words for a failure, the URL it names cut to its host."""
    return str(exc).replace(url, origin(url))


def _parse_list(raw: Any) -> dict[str, CatalogModel]:
    if not isinstance(raw, list):
        raise RepositoryUnavailable("catalog is not a JSON array")
    models = {}
    for entry in raw:
        try:
            model = parse_model(entry)
        except UnsafeManifest as exc:
            log.warning("skipping a catalog entry: %s", exc)
            continue
        models[model.id] = model
    return models
