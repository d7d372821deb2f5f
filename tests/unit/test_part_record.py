"""The part record the transfer worker keeps beside a part: what it writes is what it
reads back, what the schema in schemas/ describes, and anything else is refused."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.transfer.record import PartRecord

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas/files/part-record.json").read_text())
sizes = st.none() | st.integers(min_value=0, max_value=2**63)
texts = st.none() | st.text(max_size=40)
ranges = st.none() | st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)), max_size=5)


@given(
    url=st.text(max_size=60), etag=texts, last_modified=texts, expected_size=sizes,
    sha256=texts, done=ranges, piece_size=sizes, verified=ranges,
)  # fmt: skip
def test_round_trip_matches_the_schema(**fields: object) -> None:
    record = PartRecord(**fields)  # type: ignore[arg-type]
    data = record.to_json()
    jsonschema.validate(json.loads(data), SCHEMA)
    assert PartRecord.from_json(data) == record


def test_written_by_older_versions_and_newer_fields() -> None:
    snake = b'{"url": "u", "expected_size": 5, "done": [[0, 2]], "someday": {"x": 1}}'
    assert PartRecord.from_json(snake) == PartRecord(url="u", expected_size=5, done=[(0, 2)])


@pytest.mark.parametrize(
    "data",
    [b"[]", b"{}", b'{"url": 3}', b'{"url": "u", "expectedSize": "5"}',
     b'{"url": "u", "expectedSize": true}', b'{"url": "u", "expectedSize": -1}',
     b'{"url": "u", "done": [[0]]}', b'{"url": "u", "verified": [[0, "1"]]}',
     b'{"url": "u", "done": {"0": 1}}', b"not json"],
)  # fmt: skip
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        PartRecord.from_json(data)
