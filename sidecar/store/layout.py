"""Where things live under the home. Every path the sidecar writes comes from here."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sidecar.store.homefs import HomeFS, is_link, register_home

log = logging.getLogger(__name__)

NAME_MAX = 255  # bytes in one file name on ext4, APFS and NTFS (UTF-16 units there)
# Internal names (parts, records, locks, staging) are at most NAME_CORE bytes before
# what is appended to them: ".part.json" and an atomic write's "." + ".<pid>-<8 hex>.tmp"
# (33 bytes in all), ".part.lock", a detached part's ".<8 hex>.tmp", ".damaged-<time>".
NAME_CORE = 200
KEY_MAX = 100  # bytes of "id@version" kept as they are in names


@dataclass(frozen=True)
class HomeLayout:
    root: Path

    def __post_init__(self) -> None:
        register_home(self.root)  # so HomeFS.of() knows where links stop being trusted

    @property
    def fs(self) -> HomeFS:
        return HomeFS(self.root)

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def temp(self) -> Path:
        return self.root / "temp"

    @property
    def task_locks(self) -> Path:
        return self.root / "in-progress-downloads"

    @property
    def metadata(self) -> Path:
        # Install records beside, not inside, the model folder the app loads from.
        return self.root / "metadata"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def registry(self) -> Path:
        return self.root / "registry.json"

    @property
    def registry_lock(self) -> Path:
        return self.root / "registry.json.lock"

    @property
    def tasks_file(self) -> Path:
        return self.root / "tasks.json"

    @property
    def signature_state(self) -> Path:
        # The highest signed catalog and manifest versions seen (rollback protection):
        # not under cache/, which a user may clear.
        return self.root / "signatures.json"

    def create(self) -> list[OSError]:
        """Make the home's folders. Whatever is in the way (a file, or a link that could
        lead writes outside the home) is set aside as ``<name>.damaged-<time>``. Never
        raises: a home we cannot write still answers, and each write that fails then
        says why (PERMISSION_DENIED / HOME_UNAVAILABLE); the problems are returned."""
        problems: list[OSError] = []
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("cannot create the model home %s: %s", self.root, exc)
            return [exc]
        for folder in (self.models, self.temp, self.task_locks, self.metadata, self.cache):
            if (problem := self.ensure_folder(folder)) is not None:
                problems.append(problem)
        if (problem := self.ensure_folder(self.logs)) is not None:
            problems.append(problem)
        return problems

    def ensure_folder(self, folder: Path) -> OSError | None:
        """``folder`` (a folder of the home's own) made, or what stopped it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            info = os.lstat(folder)
        except FileNotFoundError:
            info = None
        except OSError as exc:
            return exc
        if info is not None and (not stat.S_ISDIR(info.st_mode) or is_link(info)):
            aside = self.fs.set_aside(folder)
            log.warning("%s was not a folder: set aside as %s", folder, aside)
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            log.warning("cannot create %s: %s", folder, exc)
            return exc
        return None

    def model_dir(self, model_id: str, version: str) -> Path:
        return self.models / model_id / version

    def metadata_file(self, model_id: str, version: str) -> Path:
        return self.metadata / model_id / f"{version}.json"

    # Flat names in temp/ and in-progress-downloads/ join id, version and file with "@",
    # which ids and versions never contain (and the percent-encoded file path cannot):
    # "a_b"@"c" and "a"@"b_c", or version "1.x" and file "x.y" of version "1", never meet.
    # Every such name is at most NAME_CORE bytes before its suffix (see there), so ids,
    # versions and file paths of any allowed length (CJK, 255-byte segments, 50 folders
    # deep) always make names the filesystem takes. Short names are as they always were,
    # so partial downloads of older homes resume.

    def version_key(self, model_id: str, version: str) -> str:
        """``id@version``; past KEY_MAX bytes, a head of the id and a digest after "@~"
        (no version contains "~", so a long key never equals a short one)."""
        key = f"{model_id}@{version}"
        if len(key.encode()) <= KEY_MAX:
            return key
        return f"{model_id[:40]}@~{_digest(key)[:32]}"

    def part(self, model_id: str, version: str, file_path: str) -> Path:
        prefix = self.part_prefix(model_id, version)
        encoded = quote(file_path, safe="")
        if len(prefix) + len(encoded) > NAME_CORE:
            # Too long for one file name once encoded: keep a readable head and tell
            # paths apart by their digest, after an "@" no encoded path contains.
            head = encoded[: max(0, NAME_CORE - len(prefix) - 41)]
            encoded = f"{head}@{_digest(file_path)[:40]}"
        return self.temp / f"{prefix}{encoded}.part"

    def part_prefix(self, model_id: str, version: str) -> str:
        return f"{self.version_key(model_id, version)}@"

    def staging_dir(self, model_id: str, version: str) -> Path:
        return self.temp / f"{self.version_key(model_id, version)}.staging"

    def task_lock(self, model_id: str, version: str) -> Path:
        return self.task_locks / f"{self.version_key(model_id, version)}.lock"

    def trash(self, model_id: str, version: str, why: str) -> Path:
        """Where a version folder goes to be deleted (``why``: "old", "removed")."""
        return self.temp / f"{self.version_key(model_id, version)}.{why}-{uuid.uuid4().hex[:8]}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
