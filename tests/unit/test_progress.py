"""What progress may claim: bytes a resume keeps, and a speed over a window."""

from __future__ import annotations

import json
from pathlib import Path

from sidecar.core.progress import verified_part_bytes
from sidecar.speed import SpeedWindow


def part(tmp_path: Path, size: int, record: dict | None) -> Path:
    path = tmp_path / "m@1@w.bin.part"
    with open(path, "wb") as handle:
        handle.truncate(size)
    if record is not None:
        (tmp_path / "m@1@w.bin.part.json").write_text(json.dumps(record))
    return path


def test_a_presized_segmented_part_counts_its_recorded_ranges_only(tmp_path: Path):
    path = part(tmp_path, 1000, {"url": "u", "done": [[0, 100], [50, 200], [500, 600]]})
    assert verified_part_bytes(path, 1000) == 300


def test_a_single_stream_part_counts_its_prefix(tmp_path: Path):
    path = part(tmp_path, 700, {"url": "u"})
    assert verified_part_bytes(path, 1000) == 700
    assert verified_part_bytes(path, 500) == 500  # never past the file's size


def test_a_part_without_a_record_counts_nothing(tmp_path: Path):
    assert verified_part_bytes(part(tmp_path, 1000, None), 1000) == 0
    assert verified_part_bytes(tmp_path / "missing.part", 10) == 0


def test_speed_is_the_average_over_the_window():
    window = SpeedWindow(window=5.0)
    window.add(0, now=0.0)
    window.add(100, now=0.2)
    assert window.speed() is None  # under 0.3 s of samples: not known yet
    for second in range(1, 11):
        window.add(second * 1000 + (500 if second % 2 else 0), now=float(second))
    assert window.speed() == (10_000 - 5_500) / 5.0  # bursts averaged over 5 s


def test_a_restart_from_zero_starts_the_window_afresh():
    window = SpeedWindow()
    window.add(5000, now=0.0)
    window.add(9000, now=2.0)
    window.add(0, now=3.0)
    assert window.speed() is None  # one sample since the restart
