"""Publish and index into an S3-compatible store (``--storage s3://bucket/prefix``).

A version becomes visible in three steps, each visible only once whole (a PUT is
atomic): its files, then its ``manifest.json``, then the catalog (the model's entry,
then the list). A reader sees the old catalog or the new one, never a version whose
files are missing; a publish killed half-way leaves unlisted objects that the next
publish of that version overwrites.

Publishers never lock each other out: the catalog objects are rewritten with
compare-and-swap (``If-Match`` on the ETag read, ``If-None-Match: *`` to create), and
retried on conflict, so concurrent publishers of different models (or versions) keep
each other's entries. The list is always rebuilt from the freshest entry, so it can
never hold an older entry than the one its model's publisher wrote.

With ``--sign-key``, each entry and then the list get their signature object
(``api/signatures/models[/<id>]``), written after the document it signs and re-done
while that document changed under the signer: whoever changes a document last also
signs it last, so the store settles on matching pairs.
"""

from __future__ import annotations

import json
import mimetypes
import shutil
import tempfile
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model_repo.catalog import IndexReport, encode
from model_repo.layout import CHECKSUM_FILE, MANIFEST_FILE, StorageLayout
from model_repo.publish import PublishError, PublishRequest, PublishResult, comparable, stage
from model_repo.requires import MissingRequirement, check_published
from model_repo.s3 import CAS_ATTEMPTS, CATALOG_TYPE, IMMUTABLE, StorageError, Store, is_conflict
from model_repo.signing import Signer, SigningError, previous_version, require_signer
from sidecar.errors import UnsafeManifest
from sidecar.manifest import CatalogModel, check_safe_name, check_version_safe
from sidecar.signature import Kind


def _version_order(version: dict[str, Any]) -> tuple[str, str]:
    return (version.get("updated_at") or "", version["version"])


def merge_entry(
    entry: dict[str, Any] | None, manifest: CatalogModel, make_default: bool
) -> dict[str, Any]:
    """The model's catalog entry with this version added (or replaced)."""
    new = manifest.model_dump(mode="json")
    version = new["versions"][0]
    if entry is None:
        return {**new, "default_version": version["version"]}
    versions = [v for v in entry.get("versions", []) if v.get("version") != version["version"]]
    versions.append(version)
    versions.sort(key=_version_order)
    merged = dict(entry)
    merged["versions"] = versions
    if versions[-1] is version:  # the newest publication describes the model
        merged.update({k: new[k] for k in ("name", "task", "languages")})
    names = {v["version"] for v in versions}
    if make_default or merged.get("default_version") not in names:
        merged["default_version"] = version["version"]
    return merged


def refresh_list(store: Store, model_ids: set[str], gone: frozenset[str] = frozenset()) -> None:
    """Put the current entries of ``model_ids`` into the list (and drop ``gone``)."""

    def change(current: Any) -> list[dict[str, Any]]:
        listed = {m["id"]: m for m in current or [] if isinstance(m, dict) and "id" in m}
        for model_id in model_ids:
            # Read inside the loop: a retry after a conflict picks up a newer entry.
            found = store.get_json(store.location.entry_key(model_id))
            if found is not None:
                listed[model_id] = found[0]
        for model_id in gone:
            listed.pop(model_id, None)
        return [listed[k] for k in sorted(listed)]

    store.update_json(store.location.list_key, change)


def _read_manifest(store: Store, key: str) -> tuple[CatalogModel, str] | None:
    found = store.get(key)
    if found is None:
        return None
    body, etag = found
    model = CatalogModel.model_validate_json(body)
    check_safe_name(model.id, "id")
    if len(model.versions) != 1:
        raise UnsafeManifest(f"{key}: a version manifest holds exactly one version")
    check_version_safe(model.versions[0])
    return model, etag


def _upload_version(store: Store, staged: Path, manifest: CatalogModel) -> None:
    location = store.location
    version = manifest.versions[0]
    for file in version.files:
        kind = mimetypes.guess_type(file.path)[0] or "application/octet-stream"
        key = location.version_key(manifest.id, version.version, file.path)
        store.upload_file(key, str(staged / file.path), kind)
    key = location.version_key(manifest.id, version.version, CHECKSUM_FILE)
    store.put(key, (staged / CHECKSUM_FILE).read_bytes(), "text/plain; charset=utf-8", IMMUTABLE)


def sign_object(store: Store, signer: Signer, kind: Kind, model_id: str | None) -> None:
    """Sign the current list (no id) or entry, until it stays what was signed."""
    location = store.location
    key = location.list_key if model_id is None else location.entry_key(model_id)
    for _ in range(CAS_ATTEMPTS):
        found = store.get(key)
        if found is None:
            return
        body, etag = found
        document = json.loads(body)
        manifests = _manifest_versions(store, document) if kind == "catalog" else None
        store.update_json(
            location.signature_key(model_id),
            partial(_envelope, signer, document, kind, model_id, manifests),
        )
        again = store.get(key)
        if again is None or again[1] == etag:
            return
    raise StorageError(f"{key}: still changing under other publishers; sign again with index")


def _envelope(
    signer: Signer,
    document: Any,
    kind: Kind,
    model_id: str | None,
    manifests: dict[str, int] | None,
    previous: Any,
) -> dict[str, Any]:
    return signer.envelope(document, kind, model_id, previous, manifests)


def _manifest_versions(store: Store, listed: Any) -> dict[str, int]:
    """The version of each listed model's entry signature, for the list's signature."""
    versions: dict[str, int] = {}
    for entry in listed if isinstance(listed, list) else []:
        model_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(model_id, str):
            continue
        found = store.get_json(store.location.signature_key(model_id))
        if found is not None and (version := previous_version(found[0])):
            versions[model_id] = version
    return versions


def _check_signing(store: Store, signer: Signer | None) -> None:
    signed = store.get(store.location.signature_key()) is not None
    try:
        require_signer(signed, signer, str(store.location))
    except SigningError as exc:
        raise PublishError(str(exc)) from exc


def publish_s3(
    store: Store, request: PublishRequest, now: datetime | None = None,
    signer: Signer | None = None,
) -> PublishResult:  # fmt: skip
    try:
        check_safe_name(request.model_id, "id")
        check_safe_name(request.version, "version")
    except UnsafeManifest as exc:
        raise PublishError(str(exc)) from exc
    location = store.location

    def versions_of(model_id: str) -> list[str] | None:
        found = store.get_json(location.entry_key(model_id))
        entry = found[0] if found is not None else None
        if not isinstance(entry, dict):
            return None
        listed = entry.get("versions")
        return [str(v.get("version")) for v in listed if isinstance(v, dict)] if listed else []

    try:
        check_published(request.requires, versions_of, (request.model_id, request.version))
    except MissingRequirement as exc:
        raise PublishError(str(exc)) from exc
    store.check_conditional_writes()
    _check_signing(store, signer)
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    scratch = Path(tempfile.mkdtemp(prefix="model-repo-publish-"))
    manifest_key = location.version_key(request.model_id, request.version, MANIFEST_FILE)
    try:
        staged, manifest = stage(StorageLayout(scratch), request, stamp)
        status, manifest = _place_version(store, staged, manifest, manifest_key, request.force)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # The list exists before any entry: see Store.update_json on folder-like stores.
    store.update_json(location.list_key, lambda current: [] if current is None else None)
    store.update_json(
        location.entry_key(request.model_id),
        lambda entry: merge_entry(entry, manifest, request.make_default),
    )
    if signer is not None:
        sign_object(store, signer, "manifest", request.model_id)
    refresh_list(store, {request.model_id})
    if signer is not None:
        sign_object(store, signer, "catalog", None)
    where = Path(f"{location}/storage/models/{request.model_id}/{request.version}")
    return PublishResult(status, where, manifest)


def _place_version(
    store: Store, staged: Path, manifest: CatalogModel, manifest_key: str, force: bool
) -> tuple[Any, CatalogModel]:
    shown = f"{manifest.id}@{manifest.versions[0].version}"
    try:
        existing = _read_manifest(store, manifest_key)
    except (ValueError, ValidationError, UnsafeManifest):
        existing = None  # a damaged manifest: only --force may replace it
        damaged = True
    else:
        damaged = False
    if existing is not None and comparable(existing[0]) == comparable(manifest):
        return "unchanged", existing[0]
    if (existing is not None or damaged) and not force:
        raise PublishError(
            f"{shown} is already published with different content; published versions "
            "are immutable (publish a new version, or --force to replace it)"
        )
    _upload_version(store, staged, manifest)
    body = encode(manifest.model_dump(mode="json"))
    # Create-only unless replacing: of two publishers of one new version, one wins.
    condition = {"IfMatch": existing[1]} if existing is not None else {}
    if existing is None and not damaged:
        condition = {"IfNoneMatch": "*"}
    try:
        store.put(manifest_key, body, CATALOG_TYPE, IMMUTABLE, **condition)
    except Exception as exc:
        if is_conflict(exc):
            raise PublishError(f"{shown} was published by someone else meanwhile") from exc
        raise
    return ("replaced" if existing is not None or damaged else "published"), manifest


def index_s3(store: Store, signer: Signer | None = None) -> IndexReport:
    """Rebuild every entry and the list from the version manifests in the store (and
    re-sign them all with ``signer``, which renews the expiry)."""
    _check_signing(store, signer)
    location = store.location
    root = location.key("storage", "models") + "/"
    sizes = store.list(root)
    by_model: dict[str, list[str]] = {}
    report = IndexReport()
    for key in sizes:
        parts = key[len(root) :].split("/")
        if len(parts) == 3 and parts[2] == MANIFEST_FILE:
            by_model.setdefault(parts[0], []).append(parts[1])
    for model_id in sorted(by_model):
        try:
            check_safe_name(model_id, "id")
        except UnsafeManifest:
            report.problems.append(f"{model_id!r}: not a safe model id, skipped")
            continue
        manifests = _valid_manifests(store, model_id, by_model[model_id], sizes, report.problems)
        if not manifests:
            continue
        entry = store.update_json(location.entry_key(model_id), partial(_rebuilt_entry, manifests))
        if signer is not None:
            sign_object(store, signer, "manifest", model_id)
        report.models.append(CatalogModel.model_validate(entry))
    report.problems = sorted(set(report.problems))
    listed = {m.id for m in report.models}
    entries_root = location.key("api", "models") + "/"
    stale = frozenset(k[len(entries_root) :] for k in store.list(entries_root)) - listed
    refresh_list(store, listed, gone=stale)
    if signer is not None:
        sign_object(store, signer, "catalog", None)
    for model_id in stale:
        store.delete(location.entry_key(model_id))
        store.delete(location.signature_key(model_id))
    return report


def _valid_manifests(
    store: Store, model_id: str, versions: list[str], sizes: dict[str, int], problems: list[str]
) -> list[CatalogModel]:
    """The manifests of ``model_id`` whose files are all in the store at their sizes."""
    manifests: list[CatalogModel] = []
    for version in sorted(versions):
        where = f"{model_id}/{version}"
        try:
            found = _read_manifest(
                store, store.location.version_key(model_id, version, MANIFEST_FILE)
            )
        except (ValueError, ValidationError, UnsafeManifest, StorageError) as exc:
            problems.append(f"{where}: unreadable manifest ({exc}), skipped")
            continue
        if found is None:
            continue
        manifest = found[0]
        if (manifest.id, manifest.versions[0].version) != (model_id, version):
            problems.append(f"{where}: manifest names another model or version, skipped")
            continue
        missing = [
            f.path
            for f in manifest.versions[0].files
            if sizes.get(store.location.version_key(model_id, version, f.path)) != f.size_bytes
        ]
        if missing:
            problems.append(f"{where}: missing or wrong-size file {missing[0]}, skipped")
            continue
        manifests.append(manifest)
    return manifests


def _rebuilt_entry(manifests: list[CatalogModel], current: Any) -> dict[str, Any]:
    """The entry for exactly these versions, keeping the default the entry had."""
    manifests = sorted(
        manifests, key=lambda m: _version_order(m.versions[0].model_dump(mode="json"))
    )
    entry: dict[str, Any] | None = None
    for manifest in manifests:
        entry = merge_entry(entry, manifest, make_default=True)
    assert entry is not None
    default = current.get("default_version") if isinstance(current, dict) else None
    if default in {m.versions[0].version for m in manifests}:
        entry["default_version"] = default
    return entry
