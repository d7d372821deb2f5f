"""The part record (``<file>.part.json``): where a part's bytes came from, so a resume
never mixes two versions of a file.

A standard-library dataclass rather than a pydantic model: the transfer worker reads
and writes it, and importing pydantic for it alone cost the worker ~15 MiB of resident
memory. ``schemas/files/part-record.json`` is still generated from this class (pydantic
reads dataclasses and their ``__pydantic_config__``), so it stays the one definition.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

Ranges = list[tuple[int, int]]


def to_camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


@dataclass(frozen=True)
class PartRecord:
    """Where a ``.part`` came from, so a resume never mixes two versions of a file."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {
        "alias_generator": to_camel,
        "extra": "allow",  # a newer version's fields are ignored, not an error
        "use_attribute_docstrings": True,
    }

    url: str
    etag: str | None = None
    last_modified: str | None = None
    expected_size: int | None = None
    sha256: str | None = None
    done: Ranges | None = None
    """Byte ranges [start, end) on disk (segmented parts; absent: the part is a prefix of
    the file)."""
    piece_size: int | None = None
    """The manifest's piece size, when it listed piece hashes."""
    verified: Ranges | None = None
    """Pieces on disk whose SHA-256 matched the manifest, as index ranges [first, end):
    kept on a resume from any source, whatever its URL or ETag."""

    def replace(self, **changes: Any) -> PartRecord:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> bytes:
        fields = dataclasses.asdict(self)
        return json.dumps({to_camel(k): v for k, v in fields.items()}).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> PartRecord:
        """ValueError for anything that is not a record this version can use."""
        document = json.loads(data)
        if not isinstance(document, dict):
            raise ValueError("a part record is a JSON object")
        values: dict[str, Any] = {}
        for name, kind in _KINDS.items():
            value = document.get(to_camel(name), document.get(name))
            if value is not None:
                values[name] = _checked(name, kind, value)
        if "url" not in values:
            raise ValueError("a part record names its URL")
        return cls(**values)


def _kind(hint: Any) -> type:
    """``str``, ``int`` or ``list`` for a field declared as one of them (or None)."""
    base = next(arg for arg in typing.get_args(hint) or (hint,) if arg is not type(None))
    return typing.get_origin(base) or base  # type: ignore[no-any-return]


# What each field holds, from its declaration above.
_HINTS = typing.get_type_hints(PartRecord)
_KINDS = {field.name: _kind(_HINTS[field.name]) for field in dataclasses.fields(PartRecord)}


def _checked(name: str, kind: type, value: Any) -> Any:
    if kind is int and (type(value) is not int or value < 0):
        raise ValueError(f"{name}: not a size")
    if kind is str and not isinstance(value, str):
        raise ValueError(f"{name}: not a string")
    if kind is list:
        pairs = value if isinstance(value, list) else None
        if pairs is None or not all(
            isinstance(p, list) and len(p) == 2 and all(type(n) is int for n in p) for p in pairs
        ):
            raise ValueError(f"{name}: not a list of [start, end] pairs")
        return [(p[0], p[1]) for p in pairs]
    return value
