"""Hostile piece fields in a manifest: whatever the repository sends, parsing either
refuses it as UNSAFE_MANIFEST or yields pieces that cover the file exactly."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import UnsafeManifest
from sidecar.manifest import MIN_PIECE_SIZE, parse_model, piece_count

DIGEST = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64),
    st.text(max_size=70),
    st.integers(),
    st.none(),
)
VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8)
)


@given(
    size=st.one_of(st.integers(0, 1 << 26), VALUE),
    piece_size=st.one_of(st.sampled_from([MIN_PIECE_SIZE, 1 << 20]), VALUE),
    digests=st.one_of(st.lists(DIGEST, max_size=40), VALUE),
    present=st.sampled_from(["both", "size", "digests", "none"]),
)
def test_piece_fields_parse_consistently_or_are_refused(
    size: Any, piece_size: Any, digests: Any, present: str
) -> None:
    file: dict[str, Any] = {"path": "m.bin", "size_bytes": size, "sha256": "a" * 64}
    if present in ("both", "size"):
        file["piece_size_bytes"] = piece_size
    if present in ("both", "digests"):
        file["piece_sha256"] = digests
    try:
        model = parse_model({"id": "m", "versions": [{"version": "1", "files": [file]}]})
    except UnsafeManifest:
        return
    parsed = model.versions[0].files[0]
    if parsed.piece_sha256 is None:
        assert parsed.piece_size_bytes is None
        return
    assert parsed.piece_size_bytes is not None and parsed.piece_size_bytes >= MIN_PIECE_SIZE
    assert len(parsed.piece_sha256) == piece_count(parsed.size_bytes, parsed.piece_size_bytes)
    assert all(len(d) == 64 and d == d.lower() for d in parsed.piece_sha256)
