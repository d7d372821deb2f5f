"""``model-manager``: the human CLI. It launches its own sidecar and speaks the same
JSON-RPC as the desktop app, so every command exercises the real protocol."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rich.console import Console

from model_manager_cli import commands
from model_manager_cli.client import LaunchOptions, SidecarClient, SidecarError, SidecarGone
from sidecar.config import add_location_arguments

EXIT_SIDECAR = 3  # the sidecar could not start, or died
EXIT_INTERRUPTED = 130

EPILOG = """\
exit codes: 0 ok, 1 the operation failed (the error is printed as one line, e.g.
"MODEL_NOT_AVAILABLE: whisper-small-zh not_installed"), 2 bad usage, 3 the sidecar
could not start or died, 130 interrupted (Ctrl-C keeps partial downloads: run the same
install again to resume).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="model-manager",
        description="Install, inspect and manage local models through the ModelManager sidecar.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_location_arguments(parser)
    parser.add_argument(
        "--sidecar-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the sidecar, e.g. --sidecar-arg=--stall-timeout=5",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    install = sub.add_parser("install", help="install ID[@VERSION] with live progress")
    install.add_argument(
        "ref", metavar="ID[@VERSION]", help="the model's id, and a version (default: its default)"
    )
    install.add_argument(
        "--no-deps", action="store_true", help="do not install the models it requires"
    )
    listing = sub.add_parser("list", help="the catalog with what is installed")
    listing.add_argument("--refresh", action="store_true", help="fetch the catalog now")
    listing.add_argument("--json", action="store_true", help="print the sidecar's answer")
    path = sub.add_parser("path", help="print the folder of an installed model")
    path.add_argument(
        "ref", metavar="ID[@VERSION]", help="the model's id (default: its newest installed version)"
    )
    tasks = sub.add_parser("tasks", help="unfinished tasks saved from earlier runs")
    tasks.add_argument("--json", action="store_true", help="print the sidecar's answer")
    for action, text in (
        ("pause", "pause an unfinished task (it stays paused until resumed)"),
        ("resume", "resume a paused or interrupted task and follow it"),
        ("cancel", "cancel an unfinished task and delete its partial files"),
    ):
        control = sub.add_parser(action, help=text)
        control.add_argument(
            "ref",
            metavar="TASK_ID|ID[@VERSION]",
            help="the task's id (see `tasks`), or the model (and version) it installs",
        )
    verify = sub.add_parser("verify", help="re-hash every file of an installed model")
    verify.add_argument(
        "ref", metavar="ID[@VERSION]", help="the model's id (default: its newest installed version)"
    )
    remove = sub.add_parser("remove", help="remove an installed model (all versions, or one)")
    remove.add_argument(
        "ref", metavar="ID[@VERSION]", help="the model's id, and one version to remove only that"
    )
    ranking = sub.add_parser("ranking", help="the most requested models (from the scheduler)")
    ranking.add_argument(
        "--limit", type=int, default=20, metavar="N", help="show the top N (1-1000, default 20)"
    )
    ranking.add_argument(
        "--refresh", action="store_true", help="ask the scheduler now, not a recent answer"
    )
    ranking.add_argument("--json", action="store_true", help="print the sidecar's answer")
    return parser


def dispatch(
    args: argparse.Namespace, out: Console, err: Console
) -> Callable[[SidecarClient], int]:
    command = args.command
    if command == "install":
        return lambda c: commands.install(c, args.ref, not args.no_deps, out, err)
    if command == "list":
        return lambda c: commands.list_models(c, args.refresh, args.json, out)
    if command == "path":
        return lambda c: commands.path(c, args.ref, out)
    if command == "tasks":
        return lambda c: commands.tasks(c, args.json, out)
    if command in {"pause", "resume", "cancel"}:
        return lambda c: commands.control(c, command, args.ref, out, err)
    if command == "verify":
        return lambda c: commands.verify(c, args.ref, out, err)
    if command == "remove":
        return lambda c: commands.remove(c, args.ref, out)
    return lambda c: commands.ranking(c, args.limit, args.refresh, args.json, out)


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out, err = Console(), Console(stderr=True)
    action = dispatch(args, out, err)
    options = LaunchOptions(
        home=args.home,
        repository=args.repository,
        scheduler=args.scheduler,
        extra_args=tuple(args.sidecar_arg),
    )
    client = SidecarClient(options)
    try:
        client.start()
        return action(client)
    except SidecarError as exc:
        err.print(exc.one_line(), markup=False, highlight=False, soft_wrap=True)
        return commands.FAILED
    except SidecarGone as exc:
        err.print(f"SIDECAR_EXITED: {exc}", markup=False, highlight=False, soft_wrap=True)
        if exc.details:
            err.print(exc.details.rstrip(), markup=False, highlight=False, soft_wrap=True)
        return EXIT_SIDECAR
    except KeyboardInterrupt:
        err.print("interrupted: partial downloads are kept; run the same command to resume")
        return EXIT_INTERRUPTED
    finally:
        client.close()  # shutdown: downloads stop, .part files stay, locks are released


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
