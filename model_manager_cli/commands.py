"""The commands, each on a running sidecar; they return the process exit code."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from model_manager_cli import store
from model_manager_cli.client import SidecarClient, SidecarError
from model_manager_cli.progress import FINISHED, follow

VERIFY_PROBLEMS = {
    "missing": "is missing",
    "size_mismatch": "has another size than when it was installed",
    "checksum_mismatch": "does not match its checksum (its bytes changed since it was installed)",
}

OK = 0
FAILED = 1  # the operation failed: an error answer, a failed task, a bad verify


def split_ref(ref: str) -> tuple[str, str | None]:
    """``ID`` or ``ID@VERSION``."""
    model_id, _, version = ref.partition("@")
    return model_id, version or None


def _ref_params(ref: str) -> dict[str, Any]:
    model_id, version = split_ref(ref)
    params: dict[str, Any] = {"modelId": model_id}
    if version:
        params["version"] = version
    return params


def _print_json(console: Console, value: Any) -> None:
    console.print_json(json.dumps(value))


def _report_finished(client: SidecarClient, tasks: dict[str, dict[str, Any]], err: Console) -> int:
    code = OK
    for task in tasks.values():
        if task["state"] == "ready":
            continue
        code = FAILED
        error = task.get("error") or {}
        what = f"{task['modelId']}@{task['version']}"
        if task["state"] == "cancelled":
            err.print(f"CANCELLED: {what}", markup=False, highlight=False, soft_wrap=True)
        else:
            message = error.get("message", task["state"])
            # The sidecar's messages name the model; older ones may not.
            shown = message if what in message else f"{what}: {message}"
            err.print(
                f"{error.get('code', 'FAILED')}: {shown}",
                markup=False, highlight=False, soft_wrap=True,
            )  # fmt: skip
    return code


def _installed_path(client: SidecarClient, model_id: str, version: str) -> dict[str, Any]:
    """Where an install put the version, without getModelPath: an install is not a use
    of the model (getModelPath would set its last-used time)."""
    for model in client.call("listModels")["models"]:
        for installed in model["installed"] if model["id"] == model_id else ():
            if installed["version"] == version and installed["state"] == "ready":
                return dict(installed)
    # Not ready after all (removed meanwhile): getModelPath says why, as a typed error.
    return dict(client.call("getModelPath", {"modelId": model_id, "version": version}))


def install(
    client: SidecarClient,
    ref: str,
    dependencies: bool,
    out: Console,
    err: Console,
    repair: bool = False,
) -> int:
    params = {**_ref_params(ref), "dependencies": dependencies}
    if repair:
        params["repair"] = True
    # The home's engine may be another client's (the app's): its tasks are not ours.
    others = {t["taskId"] for t in client.call("listTasks")["tasks"]}
    started = client.call("install", params)
    main_id = started["taskId"]
    if started["state"] == "paused" and main_id:
        client.call("resume", {"taskId": main_id})
    # The dependency tasks are not in the answer: they are the tasks this install started.
    listed = client.call("listTasks")["tasks"]
    ids = [
        t["taskId"]
        for t in listed
        if t["state"] not in FINISHED | {"paused"} and t["taskId"] not in others
    ]
    if main_id and main_id not in ids:
        ids.insert(0, main_id)
    elif main_id:
        ids.insert(0, ids.pop(ids.index(main_id)))
    what = f"{started['modelId']}@{started['version']}"
    if not ids:
        path = _installed_path(client, started["modelId"], started["version"])
        out.print(
            f"{what} is already installed: {path['path']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return OK
    tasks = follow(client, ids, out)
    code = _report_finished(client, tasks, err)
    if code == OK:
        path = _installed_path(client, started["modelId"], started["version"])
        out.print(
            f"installed {what}: {path['path']}", markup=False, highlight=False, soft_wrap=True
        )
    return code


def list_models(client: SidecarClient, refresh: bool, as_json: bool, out: Console) -> int:
    result = client.call("listModels", {"refresh": refresh})
    if as_json:
        _print_json(out, result)
        return OK
    store.list_table(client, result, out)  # with sizes and last use, in 80 columns
    if result.get("stale"):
        why = "offline" if result.get("offline") else "repository unreachable"
        fetched = result.get("fetchedAt") or "never"
        out.print(f"({why}: showing the catalog fetched {fetched} and local models)")
    return OK


def path(client: SidecarClient, ref: str, out: Console) -> int:
    answer = client.call("getModelPath", _ref_params(ref))
    # Only the path, so scripts can use $(model-manager path ID).
    out.print(answer["path"], markup=False, highlight=False, soft_wrap=True)
    return OK


def tasks(client: SidecarClient, as_json: bool, out: Console) -> int:
    listed = client.call("listTasks")["tasks"]
    if as_json:
        _print_json(out, listed)
        return OK
    if not listed:
        out.print("no unfinished tasks")
        return OK
    table = Table("task", "model", "state", "progress", "files", "error")
    for task in listed:
        total = task["bytesTotal"] or 0
        share = f"{100 * task['bytesDone'] / total:.0f}%" if total else "-"
        error = task.get("error") or {}
        table.add_row(
            task["taskId"],
            f"{task['modelId']}@{task['version']}",
            task["state"],
            share,
            f"{task['filesDone']}/{task['filesTotal']}",
            error.get("code", ""),
        )
    out.print(table)
    return OK


def _find_task(client: SidecarClient, ref: str) -> dict[str, Any]:
    """A task by its id, or by ``ID[@VERSION]`` of the model it installs."""
    listed = client.call("listTasks")["tasks"]
    model_id, version = split_ref(ref)
    for task in listed:
        if task["taskId"] == ref:
            return dict(task)
    matches = [t for t in listed if t["modelId"] == model_id and version in (None, t["version"])]
    if not matches:
        raise SidecarError(1007, f"no unfinished task for {ref}", {"code": "TASK_NOT_FOUND"})
    return dict(matches[0])


def control(client: SidecarClient, action: str, ref: str, out: Console, err: Console) -> int:
    task = _find_task(client, ref)
    result = client.call(action, {"taskId": task["taskId"]})
    what = f"{result['modelId']}@{result['version']}"
    if action == "resume":
        # A resumed task runs in this process: follow it, or it stops when we exit.
        return _report_finished(client, follow(client, [result["taskId"]], out), err)
    if action == "pause":
        # The answer comes as the pause is requested; wait until it has happened (and
        # is saved), or our shutdown would race it.
        result = _wait_state(client, result["taskId"], {"paused"} | FINISHED)
    out.print(
        f"{action}: {what} is {result['state']}", markup=False, highlight=False, soft_wrap=True
    )
    return OK


def _wait_state(
    client: SidecarClient, task_id: str, states: set[str], timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, Any] = client.call("getTask", {"taskId": task_id})
        if task["state"] in states or time.monotonic() > deadline:
            return task
        time.sleep(0.05)


def verify(client: SidecarClient, ref: str, out: Console, err: Console) -> int:
    result = client.call("verify", _ref_params(ref), timeout=3600)
    what = f"{result['modelId']}@{result['version']}"
    if result["ok"]:
        out.print(
            f"ok: {what} matches its checksums", markup=False, highlight=False, soft_wrap=True
        )
        return OK
    for problem in result["problems"]:
        said = VERIFY_PROBLEMS.get(problem["problem"], f"fails verification ({problem['problem']})")
        err.print(
            f"CHECKSUM_MISMATCH: {problem['path']} of {what} {said}; run "
            f"`model-manager install {what}` to download it again",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
    return FAILED


def remove(client: SidecarClient, ref: str, out: Console) -> int:
    result = client.call("remove", _ref_params(ref))
    removed = ", ".join(result["removed"]) or "nothing"
    out.print(
        f"removed {result['modelId']}: {removed}", markup=False, highlight=False, soft_wrap=True
    )
    return OK


def ranking(client: SidecarClient, limit: int, refresh: bool, as_json: bool, out: Console) -> int:
    result = client.call("ranking", {"limit": limit, "refresh": refresh})
    if as_json:
        _print_json(out, result)
        return OK
    table = Table("rank", "model", "requests", "installed")
    for item in result["items"]:
        table.add_row(
            str(item["rank"]),
            item["modelId"],
            str(item["requestCount"]),
            "yes" if item["installed"] else "",
        )
    out.print(table)
    if result.get("stale"):
        out.print(f"(scheduler unreachable: ranking from {result.get('fetchedAt')})")
    return OK
