"""Every subcommand and option of ``model-manager`` and ``model-manager-repo`` says what
it does in ``--help`` (issue 15, item 6)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from model_manager_cli.__main__ import build_parser as cli_parser
from model_repo.__main__ import build_parser as repo_parser


def undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not helps.get(name):
                    missing.append(f"{path} {name}")
                missing += undocumented(sub, f"{path} {name}")
            continue
        if not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


@pytest.mark.parametrize(
    ("build", "name"), [(cli_parser, "model-manager"), (repo_parser, "model-manager-repo")]
)
def test_every_subcommand_and_option_has_help(build, name: str):
    assert undocumented(build(), name) == []


@pytest.mark.parametrize(
    ("module", "command", "expected"),
    [
        ("model_manager_cli", "ranking", "show the top N"),
        ("model_manager_cli", "pause", "the task's id (see `tasks`)"),
        ("model_repo", "serve", "port to listen on"),
    ],
)
def test_help_as_the_user_sees_it(module: str, command: str, expected: str):
    shown = subprocess.run(
        [sys.executable, "-m", module, command, "--help"],
        capture_output=True, text=True, timeout=60, env={"COLUMNS": "200", "PATH": ""},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert expected in " ".join(shown.stdout.split())
