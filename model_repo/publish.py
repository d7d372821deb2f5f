"""Publish a folder of model files as one immutable version of a model.

The version is assembled in ``<storage>/.staging`` (same filesystem, never served),
then renamed into place under the publish lock, so readers see the whole version or
nothing. A published version never changes: publishing identical content again is a
no-op, different content is refused unless ``force``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import portalocker

from model_repo import catalog
from model_repo.layout import CHECKSUM_FILE, MANIFEST_FILE, RESERVED_NAMES, StorageLayout
from model_repo.requires import MissingRequirement, check_published, folder_versions
from model_repo.signing import Signer, SigningError, is_signed, require_signer
from sidecar.errors import UnsafeManifest
from sidecar.manifest import (
    DEFAULT_PIECE_SIZE,
    CatalogFile,
    CatalogModel,
    CatalogVersion,
    Requirement,
    check_relative_path,
    check_safe_name,
    check_version_safe,
)
from sidecar.store.fsutil import fsync_dir
from sidecar.transfer.hashing import sha256_file_and_pieces

LOCK_TIMEOUT = 300.0  # seconds to wait for another publisher before giving up
# Staging folders of publishes that were killed; old enough that none is still copying.
STALE_STAGING_SECONDS = 24 * 3600


class PublishError(Exception):
    """A publish refused for a reason the user can fix (bad input, immutable version)."""


@dataclass(frozen=True)
class PublishRequest:
    source: Path
    model_id: str
    version: str
    requires: tuple[Requirement, ...] = ()
    name: str = ""
    task: str = ""
    languages: tuple[str, ...] = ()
    extra: dict[str, Any] | None = None
    force: bool = False
    make_default: bool = True
    # Files larger than one piece list each piece's SHA-256 (None: no piece hashes).
    piece_size: int | None = DEFAULT_PIECE_SIZE


@dataclass(frozen=True)
class PublishResult:
    status: Literal["published", "unchanged", "replaced"]
    path: Path
    manifest: CatalogModel
    problems: tuple[str, ...] = ()


def parse_requirement(text: str) -> Requirement:
    """``ID@VERSION`` or ``ID`` (the default version at install time)."""
    model_id, _, version = text.partition("@")
    try:
        check_safe_name(model_id, "requires.model_id")
        if version:
            check_safe_name(version, "requires.version")
    except UnsafeManifest as exc:
        raise PublishError(str(exc)) from exc
    return Requirement(model_id=model_id, version=version or None)


def checksum_text(files: list[CatalogFile]) -> bytes:
    """``sha256sum`` format, sorted by path: ``sha256sum -c`` checks a version folder."""
    lines = (f"{f.sha256}  {f.path}\n" for f in sorted(files, key=lambda f: f.path))
    return "".join(lines).encode()


def list_source(source: Path) -> list[str]:
    """Relative POSIX paths of every file under ``source``; refuses what clients refuse."""
    if not source.is_dir():
        raise PublishError(f"not a folder: {source}")
    paths: list[str] = []
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        for name in dirs:
            if (here / name).is_symlink():
                raise PublishError(f"symlinked folder not supported: {here / name}")
        for name in files:
            full = here / name
            if not full.is_file():  # broken symlink, socket, fifo...
                raise PublishError(f"not a regular file: {full}")
            paths.append(full.relative_to(source).as_posix())
    if not paths:
        raise PublishError(f"no files in {source}")
    for path in paths:
        if path in RESERVED_NAMES:
            raise PublishError(f"{path} is written by publish; remove it from the source")
        try:
            check_relative_path(path)
        except UnsafeManifest as exc:
            raise PublishError(f"{exc} (clients would refuse it)") from exc
    return sorted(paths)


def stage(layout: StorageLayout, request: PublishRequest, now: str) -> tuple[Path, CatalogModel]:
    """Copy and hash the files into a fresh staging folder with their manifest."""
    paths = list_source(request.source)
    layout.staging.mkdir(parents=True, exist_ok=True)
    staged = Path(
        tempfile.mkdtemp(dir=layout.staging, prefix=f"{request.model_id}-{request.version}-")
    )
    try:
        files = []
        for path in paths:
            target = staged / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(request.source / path, target)
            # Hash the copy, not the source: the checksum describes what is served.
            whole, pieces = sha256_file_and_pieces(target, request.piece_size)
            files.append(
                CatalogFile(
                    path=path,
                    size_bytes=target.stat().st_size,
                    sha256=whole,
                    piece_size_bytes=request.piece_size if pieces else None,
                    piece_sha256=pieces,
                )
            )
        checksums = checksum_text(files)
        (staged / CHECKSUM_FILE).write_bytes(checksums)
        version = CatalogVersion(
            version=request.version,
            size_bytes=sum(f.size_bytes for f in files),
            updated_at=now,
            checksum_sha256=hashlib.sha256(checksums).hexdigest(),
            files=files,
            requires=list(request.requires),
            extra=request.extra or {},
        )
        check_version_safe(version)
        manifest = CatalogModel(
            id=request.model_id,
            name=request.name or request.model_id,
            task=request.task,
            languages=list(request.languages),
            versions=[version],
        )
        (staged / MANIFEST_FILE).write_bytes(catalog.encode(manifest.model_dump(mode="json")))
        for file in [*(staged / p for p in paths), staged / CHECKSUM_FILE, staged / MANIFEST_FILE]:
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged, manifest


def comparable(manifest: CatalogModel) -> dict[str, Any]:
    document = manifest.model_dump(mode="json")
    for version in document["versions"]:
        version.pop("updated_at", None)
        # Piece hashes describe the same bytes: republishing with them (or a new piece
        # size) is not a change of content.
        for file in version.get("files", []):
            file.pop("piece_size_bytes", None)
            file.pop("piece_sha256", None)
    return document


def publish(
    storage: Path, request: PublishRequest, now: datetime | None = None,
    signer: Signer | None = None,
) -> PublishResult:  # fmt: skip
    try:
        check_safe_name(request.model_id, "id")
        check_safe_name(request.version, "version")
    except UnsafeManifest as exc:
        raise PublishError(str(exc)) from exc
    layout = StorageLayout(storage)
    try:
        require_signer(is_signed(layout), signer, str(storage))
        check_published(
            request.requires, folder_versions(layout), (request.model_id, request.version)
        )
    except (SigningError, MissingRequirement) as exc:
        raise PublishError(str(exc)) from exc
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    layout.root.mkdir(parents=True, exist_ok=True)
    staged, manifest = stage(layout, request, stamp)
    target = layout.version_dir(request.model_id, request.version)
    try:
        with portalocker.Lock(layout.lock_file, timeout=LOCK_TIMEOUT):
            status = _move_into_place(layout, staged, target, manifest, request.force)
            if status == "unchanged":
                manifest = catalog.read_manifest(target / MANIFEST_FILE)
            if request.make_default or catalog.read_default(layout, request.model_id) is None:
                catalog.write_default(layout, request.model_id, request.version)
            report = catalog.rebuild(layout, signer)
            _sweep_staging(layout)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return PublishResult(status, target, manifest, tuple(report.problems))


def _sweep_staging(layout: StorageLayout) -> None:
    cutoff = time.time() - STALE_STAGING_SECONDS
    for leftover in layout.staging.iterdir():
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)


def _move_into_place(
    layout: StorageLayout, staged: Path, target: Path, manifest: CatalogModel, force: bool
) -> Literal["published", "unchanged", "replaced"]:
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
        fsync_dir(target.parent)
        return "published"
    try:
        existing = catalog.read_manifest(target / MANIFEST_FILE)
    except (OSError, ValueError, UnsafeManifest):
        existing = None
    if existing is not None and comparable(existing) == comparable(manifest):
        return "unchanged"
    if not force:
        shown = f"{manifest.id}@{manifest.versions[0].version}"
        raise PublishError(
            f"{shown} is already published with different content; published versions "
            "are immutable (publish a new version, or --force to replace it)"
        )
    # Directories cannot be swapped atomically everywhere; the gap between these two
    # renames is the only moment the version is absent, and it is never half-written.
    trash = Path(tempfile.mkdtemp(dir=layout.staging, prefix="replaced-"))
    os.replace(target, trash / "old")
    os.replace(staged, target)
    fsync_dir(target.parent)
    shutil.rmtree(trash, ignore_errors=True)
    return "replaced"
