"""A repository that invents a new requirement for every model it is asked about: the
install is refused with UNSAFE_MANIFEST naming the chain, after a bounded number of
questions, and nothing starts. Chains up to the limits install."""

from __future__ import annotations

import pytest

from tests.support.hostile_json import EndlessRequirements
from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError

UNSAFE_MANIFEST = 1008


@pytest.mark.parametrize(
    ("fan_out", "args", "problem", "chain_length"),
    [
        (0, [], "more than 16 levels of requirements", 18),
        (0, ["--max-dependency-depth", "3"], "more than 3 levels of requirements", 5),
        (9, [], "more than 64 requirements", None),
        (3, ["--max-dependencies", "10"], "more than 10 requirements", None),
    ],
)
def test_endless_requirements_are_refused_naming_the_chain(
    start_sidecar,
    repo: RepoServer,
    fan_out: int,
    args: list[str],
    problem: str,
    chain_length: int | None,
) -> None:
    repo.fault = EndlessRequirements(fan_out=fan_out)
    sidecar = start_sidecar(args=args)
    with pytest.raises(RpcError) as raised:
        sidecar.call("install", {"modelId": "chain-0"}, timeout=30)
    error = raised.value
    assert error.code == UNSAFE_MANIFEST, error.message
    assert problem in error.message
    chain = error.data["chain"]
    assert chain[0] == "chain-0@1" and chain[-1].endswith("@1")
    if chain_length is not None:
        assert chain == [f"chain-{n}@1" for n in range(chain_length)]
    assert " → ".join(chain[:3]) in error.message
    asked = [r for r in repo.requests if r[1].startswith("/api/models/")]
    assert len(asked) <= 1 + 64 + fan_out + 1  # the model, its requirements, one too many
    assert sidecar.call("listTasks")["tasks"] == []  # nothing started
    assert repo.file_requests() == []


@pytest.mark.parametrize("levels", [1, 16])
def test_requirements_up_to_the_limit_install(start_sidecar, repo: RepoServer, levels: int) -> None:
    for n in range(levels + 1):
        requires = [{"model_id": f"level-{n + 1}", "version": "1"}] if n < levels else []
        repo.add(f"level-{n}", "1", {"w.bin": f"level {n}".encode()}, requires=requires)
    sidecar = start_sidecar()
    assert sidecar.install_and_wait("level-0")["state"] == "ready"
    sidecar.wait_for(lambda: all(t["state"] == "ready" for t in sidecar.call("listTasks")["tasks"]))
    assert len(sidecar.call("listTasks")["tasks"]) == levels + 1
