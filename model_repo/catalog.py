"""The static catalog: rebuilt from the storage tree, so the tree is the only truth.

Every version folder carries its own ``manifest.json`` (a one-version catalog entry),
which is what lets ``index`` rebuild ``/api/models`` from nothing but the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model_repo.layout import MANIFEST_FILE, MODEL_FILE, StorageLayout
from model_repo.signing import Signer, sign_file
from sidecar.errors import UnsafeManifest
from sidecar.manifest import CatalogModel, CatalogVersion, check_safe_name, check_version_safe
from sidecar.store.fsutil import atomic_write_bytes


@dataclass
class IndexReport:
    models: list[CatalogModel] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def encode(document: Any) -> bytes:
    # Readable files (indent) with real UTF-8 names; nginx labels them application/json.
    return json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"


def read_manifest(path: Path) -> CatalogModel:
    """A version folder's manifest.json, parsed and checked like a client would."""
    model = CatalogModel.model_validate_json(path.read_bytes())
    check_safe_name(model.id, "id")
    if len(model.versions) != 1:
        raise UnsafeManifest(f"{path}: a version manifest holds exactly one version")
    check_version_safe(model.versions[0])
    return model


def read_default(layout: StorageLayout, model_id: str) -> str | None:
    try:
        document = json.loads((layout.model_dir(model_id) / MODEL_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    value = document.get("default_version") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


def write_default(layout: StorageLayout, model_id: str, version: str) -> None:
    path = layout.model_dir(model_id) / MODEL_FILE
    atomic_write_bytes(path, encode({"default_version": version}))


def _version_dirs(layout: StorageLayout) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    if not layout.models.is_dir():
        return found
    for model_dir in sorted(layout.models.iterdir()):
        if model_dir.name.startswith(".") or not model_dir.is_dir():
            continue
        found[model_dir.name] = [
            v for v in sorted(model_dir.iterdir()) if v.is_dir() and not v.name.startswith(".")
        ]
    return found


def _check_files(folder: Path, version: CatalogVersion) -> str | None:
    """A cheap completeness check (sizes), so a broken folder never reaches the catalog."""
    for file in version.files:
        target = folder / file.path
        if not target.is_file():
            return f"missing file {file.path}"
        if target.stat().st_size != file.size_bytes:
            return f"size of {file.path} differs from its manifest"
    return None


def _load_model(
    layout: StorageLayout, model_id: str, dirs: list[Path], report: IndexReport
) -> None:
    manifests: list[CatalogModel] = []
    for folder in dirs:
        where = f"{model_id}/{folder.name}"
        try:
            manifest = read_manifest(folder / MANIFEST_FILE)
        except FileNotFoundError:
            report.problems.append(f"{where}: no {MANIFEST_FILE}, skipped")
            continue
        except (OSError, ValueError, ValidationError, UnsafeManifest) as exc:
            report.problems.append(f"{where}: unreadable manifest ({exc}), skipped")
            continue
        if (manifest.id, manifest.versions[0].version) != (model_id, folder.name):
            report.problems.append(f"{where}: manifest names another model or version, skipped")
            continue
        if problem := _check_files(folder, manifest.versions[0]):
            report.problems.append(f"{where}: {problem}, skipped")
            continue
        manifests.append(manifest)
    if not manifests:
        return
    # Oldest first, so the newest publication describes the model and ends the list.
    manifests.sort(key=lambda m: (m.versions[0].updated_at or "", m.versions[0].version))
    newest = manifests[-1]
    versions = [m.versions[0] for m in manifests]
    default = read_default(layout, model_id)
    if default not in {v.version for v in versions}:
        default = newest.versions[0].version
    report.models.append(
        CatalogModel(
            id=model_id,
            name=newest.name,
            task=newest.task,
            languages=newest.languages,
            default_version=default,
            versions=versions,
        )
    )


def scan(layout: StorageLayout) -> IndexReport:
    report = IndexReport()
    for model_id, dirs in _version_dirs(layout).items():
        try:
            check_safe_name(model_id, "id")
        except UnsafeManifest:
            report.problems.append(f"{model_id!r}: not a safe model id, skipped")
            continue
        _load_model(layout, model_id, dirs, report)
    return report


def rebuild(layout: StorageLayout, signer: Signer | None = None) -> IndexReport:
    """Write ``api/models/<id>.json`` for each model, then ``api/models.json``, each
    followed by its signature file when ``signer`` is given (all re-signed: a rebuild
    renews the expiry).

    Entries first and the list last: a client that sees a model in the list can always
    fetch its entry. Entries of models that are gone are removed after the list."""
    report = scan(layout)
    entries = [m.model_dump(mode="json") for m in report.models]
    layout.entries.mkdir(parents=True, exist_ok=True)
    signed: dict[str, int] = {}
    for entry in entries:
        atomic_write_bytes(layout.entry_file(entry["id"]), encode(entry))
        if signer is not None:
            signed[entry["id"]] = sign_file(
                signer, layout.entry_file(entry["id"]), layout.entry_signature(entry["id"]),
                "manifest", entry["id"],
            )  # fmt: skip
    atomic_write_bytes(layout.catalog_file, encode(entries))
    if signer is not None:
        sign_file(signer, layout.catalog_file, layout.catalog_signature, "catalog", None, signed)
    keep = {entry["id"] for entry in entries}
    for stale in layout.entries.glob("*.json"):
        if stale.name.removesuffix(".json") not in keep:
            stale.unlink(missing_ok=True)
    for stale in layout.signatures.glob("*.sig") if layout.signatures.is_dir() else ():
        if stale.name.removesuffix(".sig") not in keep:
            stale.unlink(missing_ok=True)
    return report
