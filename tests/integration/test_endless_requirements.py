"""A repository that invents a new requirement for every model it is asked about: the
install is refused with UNSAFE_MANIFEST naming the chain, after a bounded number of
questions, and nothing starts. Chains up to the limits install."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.config import Settings
from sidecar.core.catalog import Catalog
from sidecar.core.requirements import resolve_requirements
from sidecar.errors import UnsafeManifest
from sidecar.store.layout import HomeLayout
from sidecar.transfer.http import JsonClient
from sidecar.transfer.network import Network
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


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    length=st.integers(0, 24),
    fan_out=st.integers(0, 4),
    max_depth=st.integers(1, 20),
    max_count=st.integers(1, 80),
)
def test_requirements_are_refused_exactly_when_a_limit_is_passed(
    repo: RepoServer, home: Path, length: int, fan_out: int, max_depth: int, max_count: int
) -> None:
    """In-process, against the real loopback repository: a chain ``length`` deep with
    ``fan_out`` leaves on each link needs ``length`` levels and ``length * (1 + fan_out)``
    models; past either limit it is refused naming a chain, else resolved in full."""
    repo.fault = EndlessRequirements(fan_out=fan_out, length=length)
    settings_ = Settings(
        home=home, repositories=(repo.url,), max_dependency_depth=max_depth,
        max_dependencies=max_count,
    )  # fmt: skip
    needed = length * (1 + fan_out)

    async def resolve() -> list[str]:
        client = JsonClient(settings_, Network(None, None, 16))
        try:
            catalog = Catalog(settings_, HomeLayout(home), client)
            root = await catalog.get_model("chain-0")
            with anyio.fail_after(60):
                found = await resolve_requirements(catalog, settings_, root, "1")
            return [f"{model.id}@{version}" for model, version in found]
        finally:
            await client.aclose()

    if length > max_depth or needed > max_count:
        with pytest.raises(UnsafeManifest) as raised:
            anyio.run(resolve)
        chain = raised.value.extra["chain"]
        assert chain[0] == "chain-0@1"
        if length <= max_depth:
            assert f"more than {max_count} requirements" in raised.value.message
            assert len(chain) <= max_depth + 1
        elif needed <= max_count:
            assert f"more than {max_depth} levels" in raised.value.message
            assert len(chain) == max_depth + 2
    else:
        resolved = anyio.run(resolve)
        assert len(resolved) == len(set(resolved)) == needed
        assert {f"chain-{n}@1" for n in range(1, length + 1)} <= set(resolved)
