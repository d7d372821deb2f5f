"""The HTTP rules of a segmented download: the headers of a range request, the checks
a reply must pass before its bytes are written at an offset, and which bytes of an
earlier attempt a resume may keep, under which validator (sent as If-Range)."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.transfer.connection import Reply
from sidecar.transfer.fetch import CONTENT_RANGE, validator_of
from sidecar.transfer.http import ServerRefused
from sidecar.transfer.plan import Unit
from sidecar.transfer.record import PartRecord, Ranges
from sidecar.transfer.target import FileTarget


class RangesUnsupported(Exception):
    """The server answered a ranged request with the whole body: use one stream."""


@dataclass(frozen=True)
class Kept:
    """What a resume keeps of an earlier attempt's part."""

    done: Ranges  # the ranges on disk
    validator: str | None  # sent as If-Range
    cross_source: bool  # another URL's bytes, on the record's validator
    same_file: bool  # the record is this very file's: its piece verdicts hold


def kept_ranges(
    record: PartRecord | None, url: str, target: FileTarget, total: int, pieces: bool
) -> Kept | None:
    """Which bytes on disk to keep. Same URL: its ranges, under its validator. Piece
    hashes: the ranges of a record for this very file, from any URL (each piece is
    checked). Without them, another URL's ranges only under a strong validator of
    the same file size, sent as If-Range: another version answers 200, not 206."""
    if record is None or (record.done is None and not target.part.exists()):
        return None
    same_url = record.url == url
    same_file = record.sha256 == target.sha256 and record.expected_size == total
    cross_source = False
    if not same_url and not pieces:
        if validator_of(record) is None or record.expected_size != total:
            return None
        cross_source = True
    elif not same_url and not same_file:
        return None
    done = record.done
    if done is None:  # a part from the single-stream path: its bytes are a prefix
        done = [(0, min(target.part.stat().st_size, total))]
    validator = validator_of(record) if same_url or cross_source else None
    return Kept(done, validator, cross_source, same_file)


def range_headers(unit: Unit, validator: str | None) -> dict[str, str]:
    headers = {
        "Accept-Encoding": "identity",
        "Range": f"bytes={unit.position}-{unit.end - 1}",
    }
    if validator:
        headers["If-Range"] = validator
    return headers


def check_ranged_reply(
    unit: Unit, response: Reply, total: int, validator: str | None, cross_source: bool
) -> None:
    status, header = response.status, response.headers.get
    if status != 206:
        raise RangesUnsupported(f"HTTP {status} to a ranged request")
    match = CONTENT_RANGE.match(header("Content-Range") or "")
    if not match or int(match.group(1)) != unit.position:
        raise ServerRefused("Content-Range does not start where asked")
    if match.group(3) != "*" and int(match.group(3)) != total:
        raise ServerRefused("the file on the server has another size")
    if (header("Content-Encoding") or "identity").lower() != "identity":
        raise ServerRefused("a compressed ranged reply")
    if cross_source and validator not in (header("ETag"), header("Last-Modified")):
        # A server that ignores If-Range: the one stream path starts over.
        raise RangesUnsupported("the new source does not confirm the part's validator")


def reply_validator(response: Reply) -> str | None:
    """What If-Range may carry from now on: the reply's strong ETag, else its
    Last-Modified."""
    etag = response.headers.get("ETag")
    fresh = etag if etag and not etag.startswith("W/") else None
    return fresh or response.headers.get("Last-Modified")


def first_record(url: str, response: Reply, total: int, sha256: str | None) -> PartRecord:
    """The part's record once a first ranged reply confirmed the server's support."""
    return PartRecord(
        url=url,
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        expected_size=total,
        sha256=sha256,
        done=[],
    )
