from __future__ import annotations

import pytest

from sidecar.errors import UnsafeManifest
from sidecar.manifest import check_relative_path, check_safe_name, parse_model

GOOD = "a" * 64


def entry(**version: object) -> dict[str, object]:
    base = {"version": "1.0", "files": [{"path": "m.bin", "size_bytes": 1, "sha256": GOOD}]}
    return {"id": "whisper", "default_version": "1.0", "versions": [{**base, **version}]}


@pytest.mark.parametrize("name", ["whisper-small-zh", "marian_zh-en", "v1.2.3", "1", "a+b"])
def test_safe_names(name: str) -> None:
    assert check_safe_name(name, "id") == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/b", "a\\b", ".hidden", "con", "NUL.txt", "a..b", "x" * 200, "é", "a "],
)
def test_unsafe_names(name: str) -> None:
    with pytest.raises(UnsafeManifest):
        check_safe_name(name, "id")


@pytest.mark.parametrize("path", ["model.bin", "conf/config.json", "a/b/c/d.txt", ".gitattributes"])
def test_safe_paths(path: str) -> None:
    assert check_relative_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/abs",
        "../x",
        "a/../../b",
        "a/./b",
        "a//b",
        "C:/x",
        "c:x",
        "a\\b",
        "a\x00b",
        "a/",
        "aux/x",
        "x.",
        "a:b",
    ],
)
def test_unsafe_paths(path: str) -> None:
    with pytest.raises(UnsafeManifest):
        check_relative_path(path)


def test_duplicate_and_case_clashing_paths_are_refused() -> None:
    files = [{"path": p, "size_bytes": 1, "sha256": GOOD} for p in ("Model.bin", "model.BIN")]
    with pytest.raises(UnsafeManifest, match="case-clashing"):
        parse_model(entry(files=files))


def test_a_path_that_is_both_file_and_folder_is_refused() -> None:
    files = [{"path": p, "size_bytes": 1, "sha256": GOOD} for p in ("a", "a/b")]
    with pytest.raises(UnsafeManifest, match="both file and folder"):
        parse_model(entry(files=files))


@pytest.mark.parametrize(
    "bad",
    [
        {"files": [{"path": "m", "size_bytes": -1, "sha256": GOOD}]},
        {"files": [{"path": "m", "size_bytes": 1 << 50, "sha256": GOOD}]},
        {"files": [{"path": "m", "size_bytes": 1, "sha256": "xyz"}]},
        {"files": "nope"},
        {"requires": [{"model_id": "../up"}]},
    ],
)
def test_malformed_versions_are_unsafe(bad: dict[str, object]) -> None:
    with pytest.raises(UnsafeManifest):
        parse_model(entry(**bad))


def test_unknown_fields_are_ignored_and_hashes_lowercased() -> None:
    raw = entry(
        files=[{"path": "m.bin", "size_bytes": 1, "sha256": GOOD.upper(), "new": 1}], future=True
    )
    model = parse_model({**raw, "brand_new_field": {"x": 1}})
    version = model.find_version(None)
    assert version is not None and version.files[0].sha256 == GOOD
