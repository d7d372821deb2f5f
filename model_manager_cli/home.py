"""``import`` and ``move-store``: the store's commands that adopt files or move the home."""

from __future__ import annotations

import argparse
import queue
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn

from model_manager_cli.client import SidecarClient, SidecarError
from model_manager_cli.commands import OK, split_ref

MOVE_TIMEOUT = 7 * 24 * 3600.0  # copying a home across drives takes as long as it takes


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    adopt = sub.add_parser(
        "import",
        help="adopt a model's files already on disk (each checked against its manifest)",
    )
    adopt.add_argument("ref", metavar="ID@VERSION", help="the model and version the files are")
    adopt.add_argument("path", metavar="FOLDER", help="the folder holding the model's files")
    adopt.add_argument(
        "--mode",
        choices=["copy", "hardlink", "move"],
        default="copy",
        help="copy (default): the files stay; hardlink: no extra space, same drive only; "
        "move: the files move into the store",
    )
    move = sub.add_parser(
        "move-store", help="move the whole model store to another folder or drive"
    )
    move.add_argument("to", metavar="FOLDER", help="an empty or new folder")


def import_model(client: SidecarClient, ref: str, folder: str, mode: str, out: Console) -> int:
    model_id, version = split_ref(ref)
    if version is None:
        raise SidecarError(-32602, f"give the version to import: {model_id}@VERSION", {})
    result = client.call(
        "importModel",
        {"modelId": model_id, "version": version, "path": str(Path(folder).absolute()),
         "mode": mode},
        timeout=MOVE_TIMEOUT,
    )  # fmt: skip
    out.print(
        f"imported {result['modelId']}@{result['version']} ({result['files']} files, "
        f"{result['sizeBytes']} bytes, {result['mode']}, manifest from "
        f"{result['manifestSource']}): {result['path']}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return OK


def move_store(client: SidecarClient, to: str, out: Console) -> int:
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(
            client.call, "moveStore", {"to": str(Path(to).absolute())}, MOVE_TIMEOUT
        )
        _show_progress(client, answer, out)
        result = answer.result()
    how = "renamed" if result["method"] == "rename" else f"copied {result['bytesCopied']} bytes"
    out.print(
        f"moved the store ({how}, {result['files']} files): {result['previousHome']} -> "
        f"{result['home']}\nuse --home {result['home']} (or MODEL_MANAGER_HOME) from now on; "
        "the old folder forwards there",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return OK


def _show_progress(client: SidecarClient, answer: Future[Any], out: Console) -> None:
    """A bar per phase of a move across drives (store.moveProgress), until the answer."""
    bars: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
        console=out, transient=True,
    ) as progress:  # fmt: skip
        while not answer.done():
            try:
                note = client.notifications.get(timeout=0.2)
            except queue.Empty:
                continue
            if note is None:
                break
            if note.get("method") != "store.moveProgress":
                continue
            params = note["params"]
            phase = params["phase"]
            if phase not in bars:
                bars[phase] = progress.add_task(phase, total=params["bytesTotal"])
            progress.update(bars[phase], completed=params["bytesDone"], total=params["bytesTotal"])
