"""The front answers getModelPath itself only when its answer is the engine's: for any
line, the front's answer (when it gives one) equals the one the engine's typed handler
gives through jsonrpcserver from the same availability."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.availability import Availability, ModelAvailability
from sidecar.front import FrontLane
from sidecar.rpc.methods import sync_handler
from sidecar.rpc.server import FastLane
from sidecar.wire import GetModelPathParams


def result(model_id: str, version: str) -> dict[str, Any]:
    return {"modelId": model_id, "version": version, "path": f"/home/models/{model_id}/{version}"}


AVAILABILITY = Availability(
    {
        "whisper": ModelAvailability(
            ready={"1.9": result("whisper", "1.9"), "1.10": result("whisper", "1.10")},
            newest_ready="1.10",
            reason="downloading",
            reasons={"2.0": "downloading", "0.1": "incomplete"},
        ),
        "llama": ModelAvailability(
            ready={}, newest_ready=None, reason="paused", reasons={"7b": "paused", "13b": "failed"}
        ),
    }
)


@sync_handler(GetModelPathParams)
def engine_get_model_path(p: GetModelPathParams) -> dict[str, Any]:
    return AVAILABILITY.lookup(p.model_id, p.version)


ENGINE = FastLane({"getModelPath": engine_get_model_path})


def front() -> FrontLane:
    lane = FrontLane()
    lane.availability = Availability.from_wire(json.loads(json.dumps(AVAILABILITY.wire())))
    return lane


names = st.sampled_from(["whisper", "llama", "1.9", "1.10", "2.0", "7b", "13b", "0.1", "", "x"])
values = st.one_of(
    names,
    st.text(max_size=140),
    st.none(),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(names, max_size=2),
)
params = st.one_of(
    st.fixed_dictionaries(
        {"modelId": values},
        optional={"version": values, "model_id": values, "extra": values},
    ),
    st.lists(values, max_size=2),
    values,
)
requests = st.fixed_dictionaries(
    {"method": st.sampled_from(["getModelPath", "getModelPath", "getmodelpath"])},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2]),
        "id": st.one_of(st.integers(), st.text(max_size=5), st.none(), st.booleans(), st.floats()),
        "params": params,
        "extra": values,
    },
)


@settings(max_examples=800, deadline=None)
@given(requests)
def test_the_front_answers_only_as_the_engine_does(message: dict[str, Any]) -> None:
    line = json.dumps(message).encode()
    answer = front()(line)
    if answer is None:
        return  # left to the engine
    expected = ENGINE(line)
    assert expected is not None
    assert json.loads(answer) == json.loads(expected)


def test_the_front_answers_plain_requests_itself() -> None:
    """The property above must not hold by the front never answering."""
    lane = front()
    cases = [
        ({"modelId": "whisper"}, {"result": result("whisper", "1.10")}),
        ({"modelId": "whisper", "version": "1.9"}, {"result": result("whisper", "1.9")}),
        ({"modelId": "whisper", "version": "2.0"}, {"reason": "downloading"}),
        ({"modelId": "whisper", "version": "3"}, {"reason": "not_installed"}),
        ({"modelId": "llama"}, {"reason": "paused"}),
        ({"modelId": "llama", "version": "13b"}, {"reason": "failed"}),
        ({"modelId": "missing", "version": None}, {"reason": "not_installed"}),
    ]
    for request_id, (query, expected) in enumerate(cases):
        line = json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": "getModelPath", "params": query}
        ).encode()
        answer = lane(line)
        assert answer is not None, query
        decoded = json.loads(answer)
        assert decoded == json.loads(ENGINE(line) or b"null")
        if "result" in expected:
            assert decoded["result"] == expected["result"]
        else:
            assert decoded["error"]["code"] == 1001
            assert decoded["error"]["data"]["reason"] == expected["reason"]


def test_without_availability_everything_goes_to_the_engine() -> None:
    line = b'{"jsonrpc":"2.0","id":1,"method":"getModelPath","params":{"modelId":"whisper"}}'
    assert FrontLane()(line) is None
