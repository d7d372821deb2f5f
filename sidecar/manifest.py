"""The repository's catalog format, and the checks that make an untrusted manifest safe.

A manifest decides file names under the home, so every id, version and path is
checked before anything is written: a refusal is ``UnsafeManifest`` and leaves
the disk untouched.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sidecar.errors import UnsafeManifest

MAX_FILES_PER_VERSION = 10_000
MAX_FILE_SIZE = 1 << 40  # 1 TiB: far above any model, far below overflow tricks
MAX_PATH_LENGTH = 1024  # characters of one file path in a manifest
# Bytes (UTF-8) of that path: with the home, models/<id>/<version>/ (up to 270 bytes)
# and this, a path stays under Linux's PATH_MAX of 4096 for any home shorter than 700.
MAX_PATH_BYTES = 3072
MAX_SEGMENT_BYTES = 255  # one file or folder name: ext4, APFS; NTFS counts UTF-16 units
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# Piece hashes (optional): each file larger than one piece may list the SHA-256 of every
# ``piece_size_bytes`` slice, so a download verifies and keeps its bytes piece by piece.
MIN_PIECE_SIZE = 64 * 1024  # tests publish 256 KiB pieces; smaller only bloats manifests
MAX_PIECE_SIZE = 1 << 30
DEFAULT_PIECE_SIZE = 16 * 1024 * 1024  # why: docs/decisions.md, "Piece hashes"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
# Device names Windows reserves in every folder, with any extension: COM¹..³ and LPT¹..³
# (superscript digits) too, and the console's CONIN$ / CONOUT$.
_WINDOWS_RESERVED = {
    "con", "prn", "aux", "nul", "conin$", "conout$", "clock$",
    *(f"com{i}" for i in "0123456789¹²³"),
    *(f"lpt{i}" for i in "0123456789¹²³"),
}  # fmt: skip
_FORBIDDEN_IN_SEGMENT = re.compile(r'[\x00-\x1f\x7f<>:"\\|?*]')


def _reserved_on_windows(segment: str) -> bool:
    # "CON.txt" and "con .tar.gz" name the device too: the part before the first dot,
    # without trailing spaces, decides.
    return segment.split(".", 1)[0].rstrip(" ").lower() in _WINDOWS_RESERVED


def check_safe_name(value: str, what: str) -> str:
    """A model id or version: one path segment, portable on every filesystem."""
    if (
        not isinstance(value, str)
        or not _SAFE_NAME.match(value)
        or value.endswith(".")
        or ".." in value
        or _reserved_on_windows(value)
    ):
        raise UnsafeManifest(f"unsafe {what}: {value!r}", field=what)
    return value


def check_relative_path(path: str) -> str:
    """A file path inside a model folder: relative, no traversal, portable to Windows,
    macOS and Linux, within the lengths every one of them takes."""
    if not isinstance(path, str) or not path:
        raise UnsafeManifest(f"unsafe file path: {path!r}", field="path")
    if (problem := _path_problem(path)) is not None:
        raise UnsafeManifest(f"unsafe file path {path!r}: {problem}", field="path", path=path)
    return path


def _path_problem(path: str) -> str | None:
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        return "not valid Unicode"
    if len(path) > MAX_PATH_LENGTH or size > MAX_PATH_BYTES:
        return f"longer than {MAX_PATH_LENGTH} characters or {MAX_PATH_BYTES} bytes"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "absolute"
    for segment in path.split("/"):
        if segment in {"", ".", ".."}:
            return "empty, '.' or '..' folder"
        if _FORBIDDEN_IN_SEGMENT.search(segment):
            return 'a control character or one of <>:"\\|?*'
        if segment.endswith((".", " ")):
            return f"{segment!r} ends with a dot or a space (Windows drops them)"
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            return f"a name longer than {MAX_SEGMENT_BYTES} bytes"
        if _reserved_on_windows(segment):
            return f"{segment!r} is a device name on Windows"
    return None


def portable_keys(path: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """What a path is where names are compared without case: on macOS (APFS: Unicode
    case folding, any normalisation) and on Windows (NTFS: each character upper-cased
    on its own, so dotless i (U+0131) is "I" there). Two paths sharing a key would be one file."""
    mac = unicodedata.normalize("NFD", unicodedata.normalize("NFD", path).casefold())
    windows = "".join(c.upper() if len(c.upper()) == 1 else c for c in path)
    return ("mac", mac), ("windows", windows)


class _Lenient(BaseModel):
    # Unknown fields are ignored so a newer repository does not break older clients.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


def piece_count(size: int, piece_size: int) -> int:
    return -(-size // piece_size)


class CatalogFile(_Lenient):
    path: str
    size_bytes: Annotated[int, Field(ge=0, le=MAX_FILE_SIZE)]
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)]
    # Left out when absent: a manifest without piece hashes stays what older publishers wrote.
    piece_size_bytes: Annotated[int, Field(ge=MIN_PIECE_SIZE, le=MAX_PIECE_SIZE)] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Size of the pieces piece_sha256 lists (the last one is shorter).",
    )
    piece_sha256: list[Annotated[str, Field(pattern=SHA256_PATTERN)]] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="SHA-256 of each piece of the file, in order: a download checks and "
        "keeps each piece on its own (files larger than one piece; optional).",
    )

    @field_validator("sha256", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("piece_sha256", mode="before")
    @classmethod
    def _lowercase_pieces(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [v.lower() if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _pieces_cover_the_file(self) -> CatalogFile:
        if (self.piece_size_bytes is None) != (self.piece_sha256 is None):
            raise ValueError("piece_size_bytes and piece_sha256 go together")
        if self.piece_size_bytes is not None and self.piece_sha256 is not None:
            wanted = piece_count(self.size_bytes, self.piece_size_bytes)
            if len(self.piece_sha256) != wanted:
                raise ValueError(f"piece_sha256 has {len(self.piece_sha256)} digests, not {wanted}")
        return self


class Requirement(_Lenient):
    model_id: str
    version: str | None = None


class CatalogVersion(_Lenient):
    version: str
    size_bytes: Annotated[int, Field(ge=0)] = 0
    updated_at: str | None = None
    checksum_sha256: str | None = None
    files: list[CatalogFile]
    requires: list[Requirement] = []
    extra: dict[str, Any] = {}


class CatalogModel(_Lenient):
    id: str
    name: str = ""
    task: str = ""
    languages: list[str] = []
    default_version: str | None = None
    versions: list[CatalogVersion] = []

    def find_version(self, version: str | None) -> CatalogVersion | None:
        wanted = version or self.default_version
        if wanted is None and self.versions:
            return self.versions[-1]
        return next((v for v in self.versions if v.version == wanted), None)


def check_version_safe(version: CatalogVersion) -> CatalogVersion:
    check_safe_name(version.version, "version")
    if len(version.files) > MAX_FILES_PER_VERSION:
        raise UnsafeManifest(f"too many files: {len(version.files)}", field="files")
    seen: dict[tuple[str, str], str] = {}  # portable key → the path that has it
    directories: dict[tuple[str, str], str] = {}  # portable key of a folder → a path in it
    for file in version.files:
        check_relative_path(file.path)
        keys = portable_keys(file.path)
        if any(key in seen for key in keys):
            raise UnsafeManifest(
                f"unsafe file path {file.path!r}: duplicate or case-clashing, the same file as "
                "another one on Windows or macOS (differs only in case or Unicode form)",
                field="path", path=file.path,
            )  # fmt: skip
        seen.update(dict.fromkeys(keys, file.path))
        for kind, key in keys:
            parts = key.split("/")
            directories.update(
                {(kind, "/".join(parts[:i])): file.path for i in range(1, len(parts))}
            )
    if clash := seen.keys() & directories.keys():
        shown = seen[min(clash)]
        raise UnsafeManifest(
            f"unsafe file path {shown!r}: both file and folder (with "
            f"{directories[min(clash)]!r})", field="path", path=shown,
        )  # fmt: skip
    for requirement in version.requires:
        check_safe_name(requirement.model_id, "requires.model_id")
        if requirement.version is not None:
            check_safe_name(requirement.version, "requires.version")
    return version


def parse_model(raw: Any) -> CatalogModel:
    """Parse and check one catalog entry; anything malformed or unsafe is UnsafeManifest."""
    try:
        model = CatalogModel.model_validate(raw)
    except ValidationError as exc:
        raise UnsafeManifest(f"malformed manifest: {exc.error_count()} problem(s)") from exc
    check_safe_name(model.id, "id")
    for version in model.versions:
        check_version_safe(version)
    return model
