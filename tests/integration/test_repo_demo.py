"""``make demo`` runs end to end on loopback, by itself, and leaves nothing behind (the
demo's signing key included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_installs_with_progress_and_cleans_up(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_MANAGER_")}
    env.update(TMPDIR=str(tmp_path), COLUMNS="160")  # the demo's temp folder lands here
    demo = subprocess.run(
        [sys.executable, "-m", "model_repo.demo"],
        capture_output=True, text=True, timeout=100, env=env,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    out = demo.stdout
    assert "MODEL_NOT_AVAILABLE: whisper-small-zh not_installed" in demo.stdout + demo.stderr
    assert "installed whisper-small-zh@1.0.0" in out
    assert "installed marian-zh-en@2.1.0" in out
    assert "align-zh@1.0.0" in out  # the requirement installed with it, with its own bar
    assert "/home/models/whisper-small-zh/1.0.0" in out  # `path`
    assert "marian-zh-en" in out.split("model-manager ranking", 1)[1]
    # Signed with a key made for this run, and verified: the installs above passed the
    # sidecar's check, and the catalog changed after signing is refused.
    assert "model-manager-repo keygen keys/demo.key" in out
    assert " ".join(out.split()).count("--sign-key keys/demo.key") == 3  # lines wrap
    assert "api/signatures/models/whisper-small-zh" in out  # the published tree
    assert "model-manager list --refresh" in out  # after the catalog was changed:
    assert "SIGNATURE_INVALID: the catalog from 127.0.0.1:" in demo.stderr
    assert "differs from what was signed" in demo.stderr
    hint = out.split("Next, by hand", 1)[1]  # what to type next, each line as typed
    assert "model-manager-repo publish schemas --storage /tmp/mm-repo --id my-model" in hint
    assert "--repository http://127.0.0.1:8000 install my-model\n" in hint
    assert '"method":"getModelPath","params":{"modelId":"my-model"}}\' | ' in hint
    assert list(tmp_path.iterdir()) == []  # the temporary repository and home are gone
