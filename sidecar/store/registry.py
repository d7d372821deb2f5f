"""registry.json: what is installed. Read-modify-write under a cross-process lock,
written atomically; rebuilt from the disk when missing or unreadable.

The rebuild reads each version's metadata file, so what is decided after the install
(a pin, a damaged mark, a repair clearing it) is written there too, before
registry.json: after a crash between the two writes registry.json still says what was
last acknowledged, and a rebuild gives what was last asked for, never an older state.

Blocking: call through ``anyio.to_thread``. The in-memory ``document`` is
replaced whole, so the event loop can read it at any time without locking.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from sidecar.manifest import check_safe_name
from sidecar.redact import redact_url
from sidecar.store.fsutil import atomic_write_json, read_json
from sidecar.store.homefs import is_link
from sidecar.store.layout import HomeLayout
from sidecar.store.locks import BlockingFileLock
from sidecar.wire_files import InstalledModel, InstalledVersion, RegistryDocument

log = logging.getLogger(__name__)

Mutation = Callable[[RegistryDocument], None]
Key = tuple[str, str]  # (model id, version)
Marks = tuple[bool, str]  # (pinned, state): what only the registry and metadata know


class Registry:
    def __init__(self, layout: HomeLayout) -> None:
        self.layout = layout
        self.document = RegistryDocument()
        self._seen_stat: tuple[int, int] | None = None

    # --- reading -------------------------------------------------------------------

    def installed(self, model_id: str, version: str) -> InstalledVersion | None:
        model = self.document.models.get(model_id)
        return model.versions.get(version) if model else None

    # --- blocking operations -------------------------------------------------------

    def load(self) -> None:
        """Load from disk, reconcile with the model folders, and save if that changed
        anything. A home we cannot write (read-only, someone else's) is still read: the
        daemon answers from it, and each write that fails says why."""
        try:
            with BlockingFileLock(self.layout.registry_lock):
                self._load(write=True)
        except OSError as exc:
            log.warning("cannot update registry.json (%s): using it as it is", exc)
            self._load(write=False)

    def _load(self, write: bool) -> None:
        document = self._read(set_aside=write)
        rebuilt = document is None
        document = document or self._rebuild()
        if (self._reconcile(document) or rebuilt) and write:
            self._write(document)
        self.document = document
        self._remember_stat()

    def reload_if_changed(self) -> bool:
        """Pick up writes by another sidecar process on the same home."""
        if self._current_stat() == self._seen_stat:
            return False
        with BlockingFileLock(self.layout.registry_lock):
            self.document = self._read_or_rebuild()
            self._remember_stat()
        return True

    def update(self, mutate: Mutation) -> None:
        with BlockingFileLock(self.layout.registry_lock):
            document = self._read_or_rebuild()
            before = _marks(document)
            mutate(document)
            self._keep_marks(document, before)  # first: see the module's docstring
            self._write(document)
            self.document = document
            self._remember_stat()

    def record(self, model_id: str, name: str, task: str, entry: InstalledVersion) -> None:
        entry = without_secrets(entry)

        def mutate(document: RegistryDocument) -> None:
            model = document.models.setdefault(model_id, InstalledModel(name=name, task=task))
            earlier = model.versions.get(entry.version)
            pinned = entry.pinned or (earlier is not None and earlier.pinned)  # a repair
            model.versions[entry.version] = entry.model_copy(update={"pinned": pinned})

        self.update(mutate)

    def set_state(self, model_id: str, version: str, state: str) -> None:
        def mutate(document: RegistryDocument) -> None:
            model = document.models.get(model_id)
            if model and version in model.versions:
                model.versions[version] = model.versions[version].model_copy(
                    update={"state": state}
                )

        self.update(mutate)

    def forget(self, model_id: str, version: str) -> None:
        def mutate(document: RegistryDocument) -> None:
            model = document.models.get(model_id)
            if model:
                model.versions.pop(version, None)
                if not model.versions:
                    document.models.pop(model_id)

        self.update(mutate)

    # --- internals -----------------------------------------------------------------

    def _current_stat(self) -> tuple[int, int] | None:
        try:
            stat = self.layout.registry.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_ino)

    def _remember_stat(self) -> None:
        self._seen_stat = self._current_stat()

    def _write(self, document: RegistryDocument) -> None:
        atomic_write_json(self.layout.registry, document.wire())

    def _keep_marks(self, document: RegistryDocument, before: dict[Key, Marks]) -> None:
        """Rewrite the metadata file of each version whose pin or state changed. A new
        version is left alone: its install wrote its metadata a moment ago."""
        for (model_id, version), marks in _marks(document).items():
            if before.get((model_id, version), marks) == marks:
                continue
            model = document.models[model_id]
            _write_metadata_file(
                self.layout, model_id, model.name, model.task, model.versions[version]
            )

    def _read_or_rebuild(self) -> RegistryDocument:
        return self._read() or self._rebuild()

    def _read(self, set_aside: bool = True) -> RegistryDocument | None:
        try:
            return RegistryDocument.model_validate(read_json(self.layout.registry))
        except FileNotFoundError:
            log.info("no registry.json yet: rebuilding from %s", self.layout.models)
        except PermissionError as exc:
            log.warning("cannot read registry.json (%s): rebuilding from disk", exc)
        except (OSError, ValueError, ValidationError, RecursionError) as exc:
            # A folder, FIFO, device, link, huge or malformed file: keep it for a human
            # (registry.json.damaged-<time>) and rebuild from the model folders.
            aside = self.layout.fs.set_aside(self.layout.registry) if set_aside else None
            log.warning(
                "registry.json unreadable (%s): rebuilding from disk%s",
                _short(exc), f"; the damaged file is kept as {aside.name}" if aside else "",
            )  # fmt: skip
        return None

    def _rebuild(self) -> RegistryDocument:
        document = RegistryDocument()
        self._reconcile(document)
        return document

    def _reconcile(self, document: RegistryDocument) -> bool:
        """Make the document agree with the model folders: add what an install left
        on disk before it could record it, drop versions whose folder is gone."""
        changed = False
        on_disk = set(self._version_folders())
        for model_id, model in list(document.models.items()):
            for version in list(model.versions):
                if (model_id, version) not in on_disk:
                    del model.versions[version]
                    changed = True
            if not model.versions:
                del document.models[model_id]
                changed = True
        for model_id, version in sorted(on_disk):
            known = document.models.get(model_id)
            if known and version in known.versions:
                continue
            recovered = self._read_metadata(model_id, version)
            if recovered is None:
                continue
            name, task, entry = recovered
            target = document.models.setdefault(model_id, InstalledModel(name=name, task=task))
            target.versions[version] = entry
            changed = True
        return changed

    def _version_folders(self) -> list[tuple[str, str]]:
        """Real folders only: a link in ``models/`` (planted, or a half-moved home) is
        never taken for an installed model, and unreadable folders are skipped."""
        found: list[tuple[str, str]] = []
        for model_dir in _real_folders(self.layout.models):
            found.extend((model_dir.name, v.name) for v in _real_folders(model_dir))
        return found

    def _read_metadata(
        self, model_id: str, version: str
    ) -> tuple[str, str, InstalledVersion] | None:
        path: Path = self.layout.metadata_file(model_id, version)
        try:
            check_safe_name(model_id, "id")
            check_safe_name(version, "version")
            raw = read_json(path)
            entry = InstalledVersion.model_validate(raw["entry"])
            return str(raw.get("name", "")), str(raw.get("task", "")), entry
        except Exception as exc:  # any unreadable record: the folder stays unregistered
            log.warning("cannot recover %s@%s from %s: %s", model_id, version, path, exc)
            return None


def _real_folders(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        if not isinstance(exc, FileNotFoundError):
            log.warning("cannot list %s: %s", folder, exc)
        return []
    found: list[Path] = []
    for entry in entries:
        try:
            info = entry.lstat()
        except OSError:
            continue
        if is_link(info):
            log.warning("ignoring %s: it is a link, not a folder of the home", entry)
        elif stat.S_ISDIR(info.st_mode):
            found.append(entry)
    return found


def without_secrets(entry: InstalledVersion) -> InstalledVersion:
    """An installed version as stored: where it came from (``source``, ``extra.url``)
    with user info and query values masked. Nothing needs the secret once installed."""
    update: dict[str, object] = {}
    if entry.source:
        update["source"] = redact_url(entry.source)
    if isinstance(entry.extra.get("url"), str):
        update["extra"] = {**entry.extra, "url": redact_url(entry.extra["url"])}
    return entry.model_copy(update=update) if update else entry


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _marks(document: RegistryDocument) -> dict[Key, Marks]:
    return {
        (model_id, version): (entry.pinned, entry.state)
        for model_id, model in document.models.items()
        for version, entry in model.versions.items()
    }


def write_metadata(
    layout: HomeLayout, model_id: str, name: str, task: str, entry: InstalledVersion
) -> None:
    """Written just before the version moves into ``models/``: refuse here, before
    anything moves, when that folder would be reached through a planted link. A repair
    (or the new copy of an incomplete version) keeps the pin of the copy it replaces,
    so a crash before the registry records it loses no pin."""
    folder = layout.model_dir(model_id, entry.version)
    layout.fs.check(folder)
    if not entry.pinned and folder.is_dir() and _pinned_in_metadata(layout, model_id, entry):
        entry = entry.model_copy(update={"pinned": True})
    _write_metadata_file(layout, model_id, name, task, entry)


def _pinned_in_metadata(layout: HomeLayout, model_id: str, entry: InstalledVersion) -> bool:
    try:
        raw = read_json(layout.metadata_file(model_id, entry.version))
        return InstalledVersion.model_validate(raw["entry"]).pinned
    except Exception:  # none, or unreadable: the registry's pin still holds (record)
        return False


def _write_metadata_file(
    layout: HomeLayout, model_id: str, name: str, task: str, entry: InstalledVersion
) -> None:
    """The install record a rebuild reads (``Registry._read_metadata``); older records
    lack ``pinned``, which then defaults to unpinned."""
    entry = without_secrets(entry)
    atomic_write_json(
        layout.metadata_file(model_id, entry.version),
        {"name": name, "task": task, "entry": entry.wire()},
    )
