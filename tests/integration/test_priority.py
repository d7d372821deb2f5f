"""Downloads are background work: on Linux every sidecar thread but the stdin reader
and its answer writer runs at a lower priority, so getModelPath is answered first
when the CPU is short."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.priority import BACKGROUND_NICENESS
from tests.support.sidecar_proc import Sidecar

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


def nice_values(pid: int) -> dict[int, int]:
    values = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        values[int(task.name)] = int(fields[16])  # field 19 of stat: nice
    return values


def test_only_the_protocol_threads_keep_the_normal_priority(
    start_sidecar: Callable[..., Sidecar],
) -> None:
    sidecar = start_sidecar()
    sidecar.call("getInfo")
    assert sidecar.process is not None
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    values = nice_values(sidecar.process.pid)
    assert values[sidecar.process.pid] == min(19, ours + BACKGROUND_NICENESS)  # the loop
    # The stdin reader and the writer of its answers, no other.
    assert sorted(values.values()).count(ours) == 2, values
