"""The store commands: du, prune, pin, unpin, and the list table with sizes and last
use. Plain text laid out by hand so every line fits 80 columns: a model id longer
than its column goes on a line of its own above its figures, never cut."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Console

from model_manager_cli.client import SidecarClient

OK = 0
WIDTH = 80


def human(size: int) -> str:
    """At most 8 characters: 999 B, 1.5 KiB, 12 MiB, 1023 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def when(iso: str | None, with_time: bool = True) -> str:
    """An ISO time from the sidecar in the local zone; 'never' for none."""
    if not iso:
        return "never"
    moment = datetime.fromisoformat(iso).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


def fit(text: str, width: int) -> str:
    """``text`` in ``width`` characters, its middle elided (versions only)."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: (keep + 1) // 2] + "…" + text[len(text) - keep // 2 :]


def _say(out: Console, line: str) -> None:
    out.print(line, markup=False, highlight=False, soft_wrap=True)


def _rows(
    out: Console, name_width: int, rows: list[tuple[str, str]], notes_at: int = WIDTH
) -> None:
    """Each row: a name and its figures; a name too long for its column gets a line of
    its own above them, and notes past the 80th column go on to the next line, under
    their column (cut after a comma)."""
    for name, rest in rows:
        if len(name) > name_width:
            _say(out, name)
            name = ""
        line = f"{name:<{name_width}}{rest}".rstrip()
        while len(line) > WIDTH and ", " in line[notes_at:]:
            cut = line.rfind(", ", notes_at, WIDTH)
            cut = cut if cut > 0 else line.index(", ", notes_at)
            _say(out, line[: cut + 1])
            line = " " * notes_at + line[cut + 2 :]
        _say(out, line)


# --- du --------------------------------------------------------------------------------

DU_NAME = 26  # then 2 + size 8 + 2 + shared 8 + 2 + last used 16 + 2 + notes 14 = 80


def du(client: SidecarClient, as_json: bool, out: Console) -> int:
    usage = client.call("diskUsage", timeout=600)
    if as_json:
        out.print_json(json.dumps(usage))
        return OK
    header = f"{'MODEL@VERSION':<{DU_NAME}}  {'SIZE':>8}  {'SHARED':>8}  {'LAST USED':<16}  NOTES"
    _say(out, header)
    rows = []
    for v in usage["versions"]:
        notes = [n for n, on in (("pinned", v["pinned"]), ("in use", v["inUse"])) if on]
        if v["state"] != "ready":
            notes.insert(0, v["state"])
        shared = human(v["sharedBytes"]) if v["sharedBytes"] else "-"
        figures = (
            f"  {human(v['sizeBytes']):>8}  {shared:>8}  {when(v['lastUsed']):<16}  "
            + ", ".join(notes)
        )
        rows.append((f"{v['modelId']}@{fit(v['version'], 40)}", figures))
    _rows(out, DU_NAME, rows, notes_at=DU_NAME + 38)
    if usage["leftovers"]:
        _say(out, "")
        _say(out, f"{'LEFTOVERS':<{DU_NAME}}  {'SIZE':>8}  {'':>8}  {'MODIFIED':<16}  KIND")
        rows = []
        for item in usage["leftovers"]:
            owner = (
                f"{item['modelId']}@{fit(item['version'], 40)}"
                if item["modelId"] and item["version"]
                else fit(item["name"], 60)
            )
            kind = item["kind"] + (", writing" if item["busy"] else "")
            figures = f"  {human(item['sizeBytes']):>8}  {'':>8}  {when(item['modifiedAt']):<16}  "
            rows.append((owner, figures + kind))
        _rows(out, DU_NAME, rows)
    _say(out, "")
    total = f"{human(usage['totalBytes'])} in all"
    if usage["maxStoreBytes"]:
        total += f" of a {human(usage['maxStoreBytes'])} quota"
    _say(
        out,
        f"installed {human(usage['modelsBytes'])}, leftovers {human(usage['leftoverBytes'])}: "
        + total,
    )
    _say(out, f"free on the volume: {human(usage['freeBytes'])}")
    return OK


# --- list ------------------------------------------------------------------------------

LIST_NAME = 22  # then 2 + version 10 + 2 + state 13 + 2 + size 8 + 2 + last used 10 + 2 + 7


def list_table(client: SidecarClient, result: dict[str, Any], out: Console) -> None:
    usage = client.call("diskUsage", timeout=600)
    by_version = {(v["modelId"], v["version"]): v for v in usage["versions"]}
    header = (
        f"{'MODEL':<{LIST_NAME}}  {'VERSION':<10}  {'STATE':<13}  {'SIZE':>8}  "
        f"{'LAST USED':<10}  UPDATE"
    )
    _say(out, header)
    rows: list[tuple[str, str]] = []
    for model in result["models"]:
        update = model["defaultVersion"] if model["updateAvailable"] else ""
        installed = model["installed"]
        if not installed:
            figures = f"  {'-':<10}  {model['state']:<13}  {'-':>8}  {'-':<10}  "
            rows.append((model["id"], figures))
            continue
        for index, version in enumerate(installed):
            found = by_version.get((model["id"], version["version"]), {})
            size = human(found.get("sizeBytes", version["sizeBytes"]))
            used = when(found.get("lastUsed"), with_time=False)
            figures = (
                f"  {fit(version['version'], 10):<10}  {version['state']:<13}  {size:>8}  "
                f"{used:<10}  {fit(update, 7) if index == 0 else ''}"
            )
            rows.append((model["id"] if index == 0 else "", figures))
    _rows(out, LIST_NAME, rows)


# --- prune, pin ------------------------------------------------------------------------


def prune(
    client: SidecarClient, dry_run: bool, older_than: float, as_json: bool, out: Console
) -> int:
    result = client.call("prune", {"dryRun": dry_run, "olderThanDays": older_than}, timeout=3600)
    if as_json:
        out.print_json(json.dumps(result))
        return OK
    if not result["items"]:
        _say(out, "nothing to prune")
    else:
        _say(out, "would remove:" if dry_run else "removed:")
        for item in result["items"]:
            name = f"  {item['kind']:<8} {fit(item['name'], 60)}"
            if len(name) > WIDTH - 10:  # a long name on a line of its own, then its size
                _say(out, name)
                name = ""
            _say(out, f"{name:<{WIDTH - 10}}{human(item['sizeBytes']):>10}")
        _say(out, f"{'would free' if dry_run else 'freed'} {human(result['freedBytes'])}")
    for reason in result["kept"]:
        _say(out, f"kept {reason}")
    return OK


def pin(client: SidecarClient, ref: dict[str, Any], pinned: bool, out: Console) -> int:
    result = client.call("pin" if pinned else "unpin", ref)
    word = "pinned" if pinned else "unpinned"
    _say(out, f"{word} {result['modelId']}@{result['version']}")
    return OK
