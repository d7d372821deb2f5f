"""importModel: adopt a model's files already on disk (a USB stick, a colleague's
download) as an installed version, without downloading them.

Every file is checked against the manifest's size and SHA-256 before the version is
registered; on any mismatch nothing is registered and the source files are where they
were. The manifest comes from the catalog (the repository, or its cache when it cannot
be reached) and otherwise from ``manifest.json`` beside the files: the file ``publish``
writes into every published version folder, so a copy of that folder imports as it is.
Such a file only proves the files are intact, not where they came from.

Modes: ``copy`` (hashed while copied), ``hardlink`` (no extra space; same volume only)
and ``move`` (verified first, then linked into the home, or copied across volumes; the
sources are deleted only once the version is registered, so a kill loses nothing). The
files are assembled in the version's staging folder and renamed into ``models/`` in one
step, as an install does.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from sidecar.errors import (
    ChecksumMismatch,
    InsufficientDiskSpace,
    InvalidState,
    ModelNotFound,
    RepositoryUnavailable,
    UnsafeManifest,
    VersionNotFound,
)
from sidecar.manifest import (
    CatalogModel,
    CatalogVersion,
    check_relative_path,
    check_safe_name,
    parse_model,
)
from sidecar.store.diskspace import free_bytes
from sidecar.store.fsutil import fsync_dir, read_json
from sidecar.store.homefs import map_home_errors
from sidecar.store.layout import HomeLayout
from sidecar.store.locks import OwnedLock
from sidecar.store.registry import Registry, write_metadata
from sidecar.transfer.hashing import READ_SIZE, sha256_file
from sidecar.wire import ModelsChanged
from sidecar.wire_files import InstalledVersion, RegistryFile
from sidecar.wire_home import ImportMode, ImportModelResult

if TYPE_CHECKING:
    from sidecar.core.manager import Manager

log = logging.getLogger(__name__)

MANIFEST_BESIDE = "manifest.json"  # as model_repo.layout.MANIFEST_FILE: publish writes it
# A link cannot be made: another drive, or a filesystem without hard links (FAT, exFAT).
NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, getattr(errno, "ENOTSUP", errno.EPERM)}


@dataclass
class ImportPlan:
    model_id: str
    version: CatalogVersion
    name: str
    task: str
    source: Path
    mode: ImportMode
    manifest_source: str
    moved_sources: list[Path] = field(default_factory=list)  # deleted once registered (move)


def manifest_beside(folder: Path, model_id: str) -> CatalogModel:
    path = folder / MANIFEST_BESIDE
    try:
        model = parse_model(read_json(path))
    except FileNotFoundError:
        raise RepositoryUnavailable(
            f"no manifest for {model_id}: the repository cannot be reached and there is no "
            f"{MANIFEST_BESIDE} in {folder}",
            reason="offline",
            path=str(path),
        ) from None
    except (OSError, ValueError) as exc:
        raise UnsafeManifest(f"{path} is not a readable manifest: {exc}", path=str(path)) from exc
    if model.id != model_id:
        raise UnsafeManifest(
            f"{path} describes {model.id!r}, not {model_id!r}", path=str(path), field="id"
        )
    return model


def choose_version(model: CatalogModel, version: str, where: str) -> CatalogVersion:
    found = model.find_version(version)
    if found is None or found.version != version:
        raise VersionNotFound(f"{model.id} has no version {version} in {where}")
    return found


def run_import(
    plan: ImportPlan, layout: HomeLayout, registry: Registry, lock_timeout_ms: int
) -> InstalledVersion:
    """Blocking: run in a thread. Registers the version, or raises having changed nothing."""
    model_id, version = plan.model_id, plan.version.version
    lock = OwnedLock(layout.task_lock(model_id, version), model_id, version, lock_timeout_ms)
    if not lock.try_acquire():
        raise InvalidState(f"{model_id}@{version} is being installed by another process")
    try:
        existing = registry.installed(model_id, version)
        if existing is not None and existing.state == "ready":
            raise InvalidState(
                f"{model_id}@{version} is already installed at "
                f"{layout.model_dir(model_id, version)}; remove it first to import it again",
                reason="already_installed",
            )
        sources = _sources(plan)
        _check_space(plan, layout, sources)
        staging = layout.staging_dir(model_id, version)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        try:
            if plan.mode == "move":
                _verify_or_raise(plan, {p: sha256_file(s) for p, s in sources.items()}, sources)
            digests = _place(plan, sources, staging, lock)
            _verify_or_raise(plan, digests, sources)
            entry = _entry(plan, digests)
            write_metadata(layout, model_id, plan.name, plan.task, entry)
            final = layout.model_dir(model_id, version)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # an incomplete earlier copy: replaced as an install does
                trash = layout.trash(model_id, version, "old")
                os.replace(final, trash)
                shutil.rmtree(trash, ignore_errors=True)
            for folder in {staging, *(p.parent for p in staging.rglob("*") if p.is_file())}:
                fsync_dir(folder)
            os.replace(staging, final)
            fsync_dir(final.parent)
        except BaseException:
            _undo(plan, staging)
            raise
        registry.record(model_id, plan.name, plan.task, entry)
    finally:
        lock.release()
    for source in plan.moved_sources:  # registered: now the sources may go
        try:
            source.unlink()
        except OSError as exc:
            log.warning("imported, but cannot delete the source %s: %s", source, exc)
    return entry


def _sources(plan: ImportPlan) -> dict[str, Path]:
    sources: dict[str, Path] = {}
    missing: list[dict[str, str]] = []
    for file in plan.version.files:
        check_relative_path(file.path)
        source = plan.source.joinpath(*file.path.split("/"))
        try:
            info = os.lstat(source) if plan.mode != "copy" else os.stat(source)
        except OSError:
            missing.append({"path": file.path, "problem": "missing"})
            continue
        if not stat.S_ISREG(info.st_mode):
            missing.append({"path": file.path, "problem": "missing"})
        elif info.st_size != file.size_bytes:
            missing.append({"path": file.path, "problem": "size_mismatch"})
        sources[file.path] = source
    if missing:
        raise _mismatch(plan, missing)
    return sources


def _check_space(plan: ImportPlan, layout: HomeLayout, sources: dict[str, Path]) -> None:
    if plan.mode == "hardlink":
        return
    same_volume = _device(plan.source) == _device(layout.temp)
    if plan.mode == "move" and same_volume:
        return
    needed = sum(f.size_bytes for f in plan.version.files)
    free = free_bytes(layout.temp)
    if needed > free:
        raise InsufficientDiskSpace(
            f"importing {plan.model_id}@{plan.version.version} needs {needed} bytes, "
            f"{free} are free under {layout.root}",
            reason="no_space",
            path=str(layout.root),
            neededBytes=needed,
            freeBytes=free,
        )


def _place(
    plan: ImportPlan, sources: dict[str, Path], staging: Path, lock: OwnedLock
) -> dict[str, str]:
    """Each file into staging; the SHA-256 of what is there now."""
    digests: dict[str, str] = {}
    for relative, source in sources.items():
        staged = staging.joinpath(*relative.split("/"))
        staged.parent.mkdir(parents=True, exist_ok=True)
        if plan.mode == "copy":
            digests[relative] = _copy_hashing(source, staged)
        elif plan.mode == "hardlink":
            try:
                os.link(source, staged)
            except OSError as exc:
                if exc.errno not in NO_LINK:
                    raise
                why = (
                    "they are on different drives"
                    if exc.errno == errno.EXDEV
                    else "that drive does not support hard links"
                )
                raise InvalidState(
                    f"cannot hard-link {source} into the home {plan_home(staging)}: {why}; "
                    "import with mode copy or move",
                    reason="cross_device",
                    path=str(source),
                ) from exc
            digests[relative] = sha256_file(staged)
        else:
            # Linked (or copied), never renamed: until the version is registered every
            # source stays where it was, so a kill mid-import loses nothing.
            try:
                os.link(source, staged)
                digests[relative] = next(f.sha256 for f in plan.version.files if f.path == relative)
            except OSError as exc:
                if exc.errno not in NO_LINK:
                    raise
                digests[relative] = _copy_hashing(source, staged)
            plan.moved_sources.append(source)
        lock.refresh()  # a long import keeps its lock fresh
    return digests


def plan_home(staging: Path) -> Path:
    return staging.parent.parent  # <home>/temp/<staging>


def _copy_hashing(source: Path, target: Path) -> str:
    hasher = hashlib.sha256()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    with open(source, "rb", buffering=0) as reader, open(target, "xb", buffering=0) as writer:
        while count := reader.readinto(view):
            hasher.update(view[:count])
            writer.write(view[:count])
        os.fsync(writer.fileno())
    return hasher.hexdigest()


def _verify_or_raise(plan: ImportPlan, digests: dict[str, str], sources: dict[str, Path]) -> None:
    wrong = [
        {"path": f.path, "problem": "checksum_mismatch"}
        for f in plan.version.files
        if digests.get(f.path) != f.sha256
    ]
    if wrong:
        raise _mismatch(plan, wrong)


def _mismatch(plan: ImportPlan, problems: list[dict[str, str]]) -> ChecksumMismatch:
    shown = ", ".join(f"{p['path']} ({p['problem']})" for p in problems[:5])
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    return ChecksumMismatch(
        f"{plan.model_id}@{plan.version.version}: {len(problems)} of "
        f"{len(plan.version.files)} files in {plan.source} do not match the manifest: "
        f"{shown}{more}; nothing was imported",
        modelId=plan.model_id,
        version=plan.version.version,
        problems=problems,
    )


def _undo(plan: ImportPlan, staging: Path) -> None:
    """Nothing registered: drop staging (sources were only linked or copied from)."""
    plan.moved_sources.clear()
    shutil.rmtree(staging, ignore_errors=True)


def _entry(plan: ImportPlan, digests: dict[str, str]) -> InstalledVersion:
    version = plan.version
    return InstalledVersion(
        version=version.version,
        state="ready",
        installed_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        size_bytes=sum(f.size_bytes for f in version.files),
        checksum_sha256=version.checksum_sha256,
        files=[
            RegistryFile(path=f.path, size_bytes=f.size_bytes, sha256=digests[f.path])
            for f in version.files
        ],
        requires=[r.model_dump() for r in version.requires],
        extra={"importedFrom": str(plan.source), "importMode": plan.mode,
               "manifestSource": plan.manifest_source},
    )  # fmt: skip


def _device(path: Path) -> int:
    return os.stat(path).st_dev


def not_found_is_absent(exc: Exception) -> bool:
    """The catalog could not give a manifest: the one beside the files may."""
    return isinstance(exc, RepositoryUnavailable | ModelNotFound | VersionNotFound)


async def import_model(
    manager: Manager, model_id: str, version: str, path: str, mode: ImportMode
) -> ImportModelResult:
    check_safe_name(model_id, "modelId")
    check_safe_name(version, "version")
    source = await anyio.to_thread.run_sync(_source_folder, Path(path), manager.layout.root)
    if (model_id, version) in manager.active:
        raise InvalidState(f"{model_id}@{version} has a task; cancel it first")
    try:
        model = await manager.catalog.get_model(model_id)
        chosen = choose_version(model, version, "the catalog")
        origin = "catalog"
    except Exception as exc:
        if not not_found_is_absent(exc):
            raise
        log.info("import of %s@%s: no manifest from the catalog (%s)", model_id, version, exc)
        model = await anyio.to_thread.run_sync(manifest_beside, source, model_id)
        chosen = choose_version(model, version, str(source / MANIFEST_BESIDE))
        origin = "file"
    plan = ImportPlan(
        model_id=model_id, version=chosen, name=model.name, task=model.task,
        source=source, mode=mode, manifest_source=origin,
    )  # fmt: skip
    layout, registry = manager.layout, manager.registry
    with map_home_errors():
        entry = await anyio.to_thread.run_sync(
            run_import, plan, layout, registry, manager.settings.lock_timeout_ms
        )
    manager.failed.discard((model_id, version))
    folder = str(layout.model_dir(model_id, version))
    changed = ModelsChanged(model_id=model_id, version=version, state="ready", path=folder)
    await manager.notify("models.changed", changed.wire())
    return ImportModelResult(
        model_id=model_id, version=version, path=folder,
        mode=mode, files=len(entry.files), size_bytes=entry.size_bytes,
        manifest_source="catalog" if origin == "catalog" else "file",
    )  # fmt: skip


def _source_folder(path: Path, home: Path) -> Path:
    source = path.expanduser()
    if not source.is_dir():
        raise InvalidState(f"{source} is not a folder", path=str(source))
    source = source.resolve()
    home = home.resolve()
    if source == home or home in source.parents:
        raise InvalidState(f"{source} is inside the model home {home}", path=str(source))
    return source
