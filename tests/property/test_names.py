"""Internal names (parts, records, locks, staging, trash) stay within one file name
however long or non-Latin the id, version and file path are; short ones keep the names
they always had; and names Windows or macOS cannot hold are refused."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sidecar.errors import UnsafeManifest
from sidecar.manifest import (
    CatalogVersion,
    check_relative_path,
    check_safe_name,
    check_version_safe,
)
from sidecar.redact import redact_text
from sidecar.store.layout import NAME_MAX, HomeLayout

LAYOUT = HomeLayout(Path("/srv/home"))
LONGEST_PID = 4_194_304  # Linux's pid_max limit

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._+-]{0,127}\Z").filter(
    lambda n: not n.endswith(".") and ".." not in n
)
segment_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=90
) | st.sampled_from(["語" * 85, "a" * 255, "模型权重文件" * 10, "ok.bin"])
file_paths = st.lists(segment_text, min_size=1, max_size=50).map("/".join)


def accepted(path: str) -> bool:
    try:
        check_relative_path(path)
    except UnsafeManifest:
        return False
    return True


def every_name(model_id: str, version: str, path: str) -> list[str]:
    part = LAYOUT.part(model_id, version, path)
    record = part.name + ".json"
    return [
        part.name,
        record,
        f".{record}.{LONGEST_PID}-deadbeef.tmp",  # the record's atomic write
        part.name + ".lock",
        part.name + ".deadbeef.tmp",  # a detached part
        part.name + ".damaged-20261202T024500.123456Z",
        LAYOUT.staging_dir(model_id, version).name,
        LAYOUT.task_lock(model_id, version).name,
        LAYOUT.trash(model_id, version, "removed").name,
    ]


@given(ids, ids, file_paths)
def test_every_internal_name_fits_one_file_name(model_id: str, version: str, path: str):
    assume(accepted(path))
    for name in every_name(model_id, version, path):
        assert len(name.encode()) <= NAME_MAX, name


@given(ids, ids, file_paths, ids, ids, file_paths)
def test_names_of_different_files_never_meet(a_id, a_version, a_path, b_id, b_version, b_path):
    assume((a_id, a_version, a_path) != (b_id, b_version, b_path))
    a = LAYOUT.part(a_id, a_version, a_path).name
    b = LAYOUT.part(b_id, b_version, b_path).name
    assert a != b
    # remove_parts finds a version's parts by its prefix: never another version's.
    if (a_id, a_version) != (b_id, b_version):
        assert not b.startswith(LAYOUT.part_prefix(a_id, a_version))
        assert LAYOUT.staging_dir(a_id, a_version) != LAYOUT.staging_dir(b_id, b_version)
        assert LAYOUT.task_lock(a_id, a_version) != LAYOUT.task_lock(b_id, b_version)


@given(ids, ids, file_paths)
def test_short_names_are_as_they_always_were(model_id: str, version: str, path: str):
    """Homes with partial downloads resume across the upgrade."""
    key = f"{model_id}@{version}"
    encoded = quote(path, safe="")
    assume(len(key) <= 100 and len(key) + 1 + len(encoded) <= 200)
    assert LAYOUT.part(model_id, version, path).name == f"{key}@{encoded}.part"
    assert LAYOUT.staging_dir(model_id, version).name == f"{key}.staging"
    assert LAYOUT.task_lock(model_id, version).name == f"{key}.lock"


DEVICES = ["con", "prn", "aux", "nul", "conin$", "conout$", "clock$"]
DEVICES += [f"{d}{n}" for d in ("com", "lpt") for n in "0123456789¹²³"]


@given(
    st.sampled_from(DEVICES),
    st.lists(st.booleans(), min_size=8, max_size=8),
    st.sampled_from(["", ".txt", ".tar.gz", " .bin", ".", " "]),
    st.sampled_from(["", "weights/", "a/b/"]),
)
def test_windows_device_names_are_refused(device: str, upper: list[bool], ext: str, folder: str):
    name = "".join(c.upper() if u else c for c, u in zip(device, upper + [False] * 8, strict=False))
    with pytest.raises(UnsafeManifest) as raised:
        check_relative_path(f"{folder}{name}{ext}")
    assert raised.value.to_data()["field"] == "path"
    with pytest.raises(UnsafeManifest):
        check_safe_name(name, "id")


@given(file_paths, st.sampled_from(["upper", "lower", "nfd", "nfc", "swapcase"]))
def test_paths_one_file_on_windows_or_macos_are_refused(path: str, change: str):
    assume(accepted(path))
    other = {
        "upper": _each(path, str.upper),
        "lower": _each(path, str.lower),
        "nfd": unicodedata.normalize("NFD", path),
        "nfc": unicodedata.normalize("NFC", path),
        "swapcase": _each(path, str.swapcase),
    }[change]
    assume(other != path and accepted(other))
    files = [{"path": p, "size_bytes": 1, "sha256": "0" * 64} for p in (path, other)]
    with pytest.raises(UnsafeManifest) as raised:
        check_version_safe(CatalogVersion.model_validate({"version": "1", "files": files}))
    # Error data is redacted like any text that may hold a URL: "&k=v" in a name is masked.
    assert raised.value.to_data()["path"] in (redact_text(path), redact_text(other))


def _each(path: str, change: Callable[[str], str]) -> str:
    """Case changed character by character, as a case-insensitive filesystem compares
    ("ß".upper() is "SS": two characters, which no filesystem takes for one)."""
    return "".join(change(c) if len(change(c)) == 1 else c for c in path)
