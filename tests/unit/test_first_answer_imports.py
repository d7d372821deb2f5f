"""What the daemon imports before it can answer getModelPath: none of what
``Manager.complete`` loads afterwards, nor the HTTP, signature or jsonschema stacks.
A top-level import added to a module on that path fails here, not in a bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sidecar.core.later import THE_REST

ROOT = Path(__file__).parents[2]
LATER = (*THE_REST, "jsonschema", "jsonrpcserver.main", "httpx", "cryptography",
         "sidecar.signature", "urllib3", "truststore")  # fmt: skip
# What sidecar/__main__.py does before the event loop starts.
PROBE = """
import json, sys
from sidecar.rpc.dispatch import defer_package_init
defer_package_init()
import sidecar.app
print(json.dumps(sorted(sys.modules)))
"""


def test_the_first_answer_imports_nothing_that_loads_after_it() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    loaded = set(json.loads(out))
    assert "sidecar.core.manager" in loaded  # the probe did import the daemon
    assert sorted(loaded.intersection(LATER)) == []
