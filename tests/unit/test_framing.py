from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.rpc.framing import LineSplitter, TooLong


def collect(chunks: list[bytes], limit: int) -> list[bytes | TooLong]:
    splitter = LineSplitter(limit)
    lines = [line for chunk in chunks for line in splitter.feed(chunk)]
    return lines + splitter.finish()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if data[a:b]]


lines_strategy = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12)


@settings(max_examples=200)
@given(lines_strategy, st.lists(st.integers(min_value=0), max_size=8))
def test_lines_survive_any_chunking(lines: list[bytes], cuts: list[int]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    got = collect(split(data, cuts), limit=64)
    assert got == [line.removesuffix(b"\r") for line in lines if line.removesuffix(b"\r").strip()]


@settings(max_examples=300)
@given(
    st.lists(st.binary(max_size=90).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    st.lists(st.integers(min_value=0), max_size=8),
    st.booleans(),
)
def test_overlong_lines_give_one_error_each_however_chunked(
    lines: list[bytes], cuts: list[int], final_newline: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    expected: list[bytes | TooLong] = []
    for line in lines:
        line = line.removesuffix(b"\r")
        if len(line) > 64:
            expected.append(TooLong(64))
        elif line.strip():
            expected.append(line)
    assert collect(split(data, cuts), limit=64) == expected


def test_an_overlong_line_is_reported_once_and_skipped() -> None:
    data = [b'{"a":1}\n', b"x" * 50, b"y" * 50, b"z\n", b'{"b":2}\n']
    assert collect(data, limit=32) == [b'{"a":1}', TooLong(32), b'{"b":2}']


def test_the_last_line_without_a_newline_is_served() -> None:
    assert collect([b'{"a":1}\n{"b"', b":2}"], limit=64) == [b'{"a":1}', b'{"b":2}']
