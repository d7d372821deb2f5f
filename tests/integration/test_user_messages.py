"""Errors in the user's language (issue 15, item 4), each reproduced as reported, over
the real sidecar's pipes against a real loopback repository: every message names the
model (and the model that requires a dependency), never a part file or a URL path."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.faults import WrongBytes
from tests.support.repo_server import RepoServer
from tests.support.sidecar_proc import RpcError, Sidecar

VOCAB = {"vocab.bin": os.urandom(64_000)}
FINISHED = {"ready", "failed", "cancelled"}


def install_error(sidecar: Sidecar, model_id: str, **params: object) -> RpcError:
    with pytest.raises(RpcError) as raised:
        sidecar.call("install", {"modelId": model_id, **params})
    return raised.value


def assert_plain(message: str) -> None:
    """No internal name and no URL path in what the user reads."""
    assert ".part" not in message, message
    assert "/api/" not in message and "/storage/" not in message, message
    assert "Traceback" not in message, message


def test_no_repository_names_the_model_and_how_to_set_one(start_sidecar, repo: RepoServer):
    # Reported: "no source serves tok-zh@1.0.0@vocab.bin.part: no repository configured".
    # The manifest is known from the catalog cache of a run that had a repository.
    repo.add("tok-zh", "1.0.0", VOCAB)
    with_repo = start_sidecar()
    with_repo.call("listModels", {"refresh": True})
    with_repo.stop()

    sidecar = start_sidecar(repositories=[])
    started = sidecar.call("install", {"modelId": "tok-zh"})
    task = sidecar.wait_task(started["taskId"], FINISHED)
    assert task["state"] == "failed"
    error = task["error"]
    assert error["code"] == "REPOSITORY_UNAVAILABLE"
    assert "tok-zh@1.0.0" in error["message"]
    assert "--repository" in error["message"]
    assert "MODEL_MANAGER_REPOSITORY" in error["message"]
    assert_plain(error["message"])

    # A model the cache does not know: the lookup says the same.
    unknown = install_error(sidecar, "whisper-large")
    assert unknown.data["code"] == "REPOSITORY_UNAVAILABLE"
    assert "whisper-large" in unknown.message
    assert "--repository" in unknown.message and "MODEL_MANAGER_REPOSITORY" in unknown.message
    assert "none configured" not in unknown.message
    assert unknown.data["modelId"] == "whisper-large"


def test_model_not_found_names_the_model_not_a_url_path(start_sidecar, repo: RepoServer):
    # Reported: "MODEL_NOT_FOUND: not in the repository: /api/models/whisper-large".
    sidecar = start_sidecar()
    error = install_error(sidecar, "whisper-large")
    assert error.data["code"] == "MODEL_NOT_FOUND"
    assert error.data["modelId"] == "whisper-large"
    assert "whisper-large is not in the repository" in error.message
    assert repo.url in error.message  # where it looked, as the host the user configured
    assert_plain(error.message)
    assert "ends in /api" not in error.message


def test_a_repository_url_ending_in_api_is_named_with_the_fix(start_sidecar, repo: RepoServer):
    sidecar = start_sidecar(repositories=[repo.url + "/api"])
    error = install_error(sidecar, "whisper-large")
    assert error.data["code"] == "MODEL_NOT_FOUND"
    assert error.data["modelId"] == "whisper-large"
    assert "ends in /api" in error.message
    assert f"use {repo.url} instead" in error.message
    assert "/api/models" not in error.message


def test_a_missing_dependency_names_the_model_that_requires_it(start_sidecar, repo: RepoServer):
    repo.add("whisper", "1.0.0", VOCAB, requires=[{"model_id": "nope", "version": "9"}])
    sidecar = start_sidecar()
    error = install_error(sidecar, "whisper")
    assert error.data["code"] == "MODEL_NOT_FOUND"
    assert "whisper@1.0.0 requires nope@9, which is not in the repository" in error.message
    assert error.data["modelId"] == "nope"
    assert error.data["version"] == "9"
    assert error.data["requiredBy"] == "whisper@1.0.0"
    assert_plain(error.message)
    assert sidecar.call("listTasks")["tasks"] == [], "nothing starts when a requirement is missing"


def test_a_missing_dependency_version_lists_the_versions_that_exist(
    start_sidecar, repo: RepoServer
):
    repo.add("align", "1.0.0", VOCAB)
    repo.add("align", "1.1.0", VOCAB)
    repo.add("whisper", "1.0.0", VOCAB, requires=[{"model_id": "align", "version": "9"}])
    error = install_error(start_sidecar(), "whisper")
    assert error.data["code"] == "VERSION_NOT_FOUND"
    assert "whisper@1.0.0 requires align@9, which does not exist" in error.message
    assert "1.0.0, 1.1.0" in error.message
    assert error.data["availableVersions"] == ["1.0.0", "1.1.0"]
    assert error.data["modelId"] == "align" and error.data["requiredBy"] == "whisper@1.0.0"


def test_version_not_found_lists_the_versions_that_exist(start_sidecar, repo: RepoServer):
    repo.add("tok-zh", "1.0.0", VOCAB)
    repo.add("tok-zh", "1.2.0", VOCAB)
    error = install_error(start_sidecar(), "tok-zh", version="2.0")
    assert error.data["code"] == "VERSION_NOT_FOUND"
    assert error.data["modelId"] == "tok-zh"
    assert error.data["version"] == "2.0"
    assert error.data["availableVersions"] == ["1.0.0", "1.2.0"]
    assert "tok-zh@2.0 does not exist" in error.message
    assert "1.0.0, 1.2.0" in error.message


def test_checksum_mismatch_is_a_sentence_naming_model_version_and_file(
    start_sidecar, repo: RepoServer
):
    repo.add("tok-zh", "1.0.0", VOCAB)
    repo.fault = WrongBytes(times=None, match="/storage/models/tok-zh/1.0.0/vocab.bin")
    sidecar = start_sidecar()
    task = sidecar.install_and_wait("tok-zh")
    assert task["state"] == "failed"
    message = task["error"]["message"]
    assert task["error"]["code"] == "CHECKSUM_MISMATCH"
    assert message.startswith("the downloaded vocab.bin of tok-zh@1.0.0 does not match"), message
    assert_plain(message)


def test_invalid_params_carry_the_field_and_the_problem(start_sidecar):
    sidecar = start_sidecar()
    with pytest.raises(RpcError) as raised:
        sidecar.call("ranking", {"limit": 5000})
    assert raised.value.code == -32602
    assert raised.value.data == [
        {"field": "limit", "problem": "Input should be less than or equal to 1000"}
    ]
    assert "limit: Input should be less than or equal to 1000" in raised.value.message


def test_task_errors_name_the_model_in_message_and_data(start_sidecar, repo: RepoServer):
    repo.add("tok-zh", "1.0.0", VOCAB)
    sidecar = start_sidecar()
    task = sidecar.install_and_wait("tok-zh")
    with pytest.raises(RpcError) as raised:
        sidecar.call("cancel", {"taskId": task["taskId"]})
    assert raised.value.data["modelId"] == "tok-zh"
    assert raised.value.data["version"] == "1.0.0"
    assert "tok-zh@1.0.0" in raised.value.message


@pytest.mark.parametrize("batch", [False, True])
def test_a_request_without_jsonrpc_is_answered_with_its_id(start_sidecar, batch: bool):
    # Reported: answered with "id": null although it had an id.
    sidecar = start_sidecar()
    request = {"id": 7, "method": "getInfo"}
    sidecar.send([request, {"jsonrpc": "2.0", "id": 8, "method": "getInfo"}] if batch else request)
    answer = sidecar.wait_response(7)
    assert answer["error"]["code"] == -32600
    assert '"jsonrpc": "2.0"' in answer["error"]["data"]
    assert not sidecar.null_id_responses
    if batch:
        assert "result" in sidecar.wait_response(8)


def test_a_request_with_a_wrong_jsonrpc_version_is_answered_with_its_id(start_sidecar):
    sidecar = start_sidecar()
    sidecar.send_raw(
        json.dumps({"jsonrpc": "1.0", "id": "x", "method": "getInfo"}).encode() + b"\n"
    )
    answer = sidecar.wait_response("x")
    assert answer["error"]["code"] == -32600
    assert "2.0" in answer["error"]["data"]


def test_an_unsafe_manifest_names_the_model_in_its_data(start_sidecar, repo: RepoServer):
    repo.raw_entries["evil"] = {
        "id": "evil",
        "default_version": "1",
        "versions": [
            {"version": "1", "files": [{"path": "../x", "size_bytes": 1, "sha256": "0" * 64}]}
        ],
    }
    error = install_error(start_sidecar(), "evil")
    assert error.data["code"] == "UNSAFE_MANIFEST"
    assert error.data["modelId"] == "evil"


def test_a_failed_dependency_names_the_model_that_requires_it(start_sidecar, repo: RepoServer):
    repo.add("tok-zh", "1.0.0", VOCAB)
    repo.add("whisper", "1.0.0", VOCAB, requires=[{"model_id": "tok-zh", "version": "1.0.0"}])
    repo.fault = WrongBytes(times=None, match="/storage/models/tok-zh/1.0.0/vocab.bin")
    sidecar = start_sidecar()
    sidecar.install_and_wait("whisper")
    tasks = {t["modelId"]: t for t in sidecar.call("listTasks")["tasks"]}
    failed = sidecar.wait_task(tasks["tok-zh"]["taskId"], FINISHED)
    assert failed["state"] == "failed"
    message = failed["error"]["message"]
    assert "vocab.bin of tok-zh@1.0.0" in message
    assert message.endswith("(tok-zh@1.0.0 is required by whisper@1.0.0)"), message
