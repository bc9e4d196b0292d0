"""`odrecords completion SHELL`: the shell completion script of every command and flag.

shtab writes it from the commands' own argparse parsers (`pipelines.flags`), so completion
knows each flag as `--help` does and cannot drift from it; the script runs no Python when
the shell completes, so completing costs nothing of odrecords' start-up."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import shtab

from pipelines.flags import EXPORT_FORMATS, command_parsers, completion_parser
from transforms.readers import FORMAT_NAMES

# Arguments that name files or folders, completed as such; the rest by their choices.
_FILES = {"config", "annotations", "label_map", "classes", "class_map", "input", "pattern"}
_FOLDERS = {"images", "output", "render"}
# Choices the parsers leave to the commands to check (their messages say more than
# argparse's), offered by completion all the same.
_CHOICES = {("create", "format"): (*FORMAT_NAMES, "auto"), ("export", "format"): EXPORT_FORMATS}


def _completed(command: str, parser: argparse.ArgumentParser) -> None:
    """Tells shtab what each argument of `parser` takes, and drops the `--two_words`
    spellings of `--two-words` flags, which would double every completion."""
    for action in parser._actions:
        options = action.option_strings
        action.option_strings = [o for o in options if o.replace("_", "-") == o or o[:2] != "--"]
        if action.dest in _FILES:
            action.complete = shtab.FILE
        elif action.dest in _FOLDERS:
            action.complete = shtab.DIRECTORY
        elif (command, action.dest) in _CHOICES:
            action.choices = _CHOICES[command, action.dest]


def odrecords_parser() -> argparse.ArgumentParser:
    """`odrecords` with each command as a sub-command, as the completion script sees it."""
    parser = argparse.ArgumentParser(prog="odrecords")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what Beam does")
    parser.add_argument("--version", action="store_true", help="print the version")
    commands = parser.add_subparsers(dest="command")
    for name, command in command_parsers().items():
        _completed(name, command)
        # The first sentence of the description: zsh shows it beside each command.
        summary = command.description.split(". ")[0].removesuffix(".")
        commands.add_parser(name, parents=[command], add_help=False, help=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the script for the shell named in `argv`."""
    args = completion_parser().parse_args(sys.argv[1:] if argv is None else argv)
    print(shtab.complete(odrecords_parser(), shell=args.shell).rstrip("\n"))
    return 0
