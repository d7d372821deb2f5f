"""A token read from a file keeps its line break: the sidecar must send the token
itself, and never echo it (an HTTP library's "Illegal header value" did, in every
request's error, the log and stderr)."""

from __future__ import annotations

import pytest

from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError


@pytest.mark.parametrize("around", [("", "\n"), ("", "\r\n"), (" ", " "), ("\t", "\n\n")])
def test_a_token_with_whitespace_around_it_is_sent_without(
    start_sidecar, repo: RepoServer, around: tuple[str, str]
) -> None:
    repo.add("m", "1", {"w.bin": b"weights"})
    sidecar = start_sidecar(env={"MODEL_MANAGER_TOKEN": around[0] + "s3cret-token" + around[1]})
    assert sidecar.install_and_wait("m")["state"] == "ready"
    assert repo.requests
    assert all(r[2].get("Authorization") == "Bearer s3cret-token" for r in repo.requests)
    sidecar.stop()
    assert "s3cret-token" not in sidecar.stderr()
    assert "s3cret-token" not in (sidecar.home / "logs" / "sidecar.log").read_text()


@pytest.mark.parametrize("inside", ["\n", "\r", "\x1b", "\x7f", "é"])
def test_a_token_with_a_control_character_inside_stops_the_start_unshown(
    start_sidecar, repo: RepoServer, inside: str
) -> None:
    sidecar = start_sidecar(env={"MODEL_MANAGER_TOKEN": "S3KRIT" + inside + "T4IL"})
    # Started by a program, it answers with the reason (INVALID_OPTION), then exits 2.
    with pytest.raises(RpcError) as refused:
        sidecar.call("getInfo")
    assert refused.value.data["code"] == "INVALID_OPTION"
    assert "MODEL_MANAGER_TOKEN" in refused.value.message
    assert "S3KRIT" not in refused.value.message and "T4IL" not in refused.value.message
    sidecar.close_stdin()
    assert sidecar.wait_exit() == 2
    stderr = sidecar.stderr()
    assert "MODEL_MANAGER_TOKEN" in stderr
    assert "S3KRIT" not in stderr and "T4IL" not in stderr, stderr
    assert repo.requests == []
