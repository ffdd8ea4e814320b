"""The console entry point: start a pytest child warming up, then parse the command line.

Importing click and the runner takes a good part of a run's start-up; a pytest child
started first (runner.supervisor.prewarm) imports pytest on the other core meanwhile.
Whether the command runs pytest at all is read from the command line exactly, before
click is imported: the options that take a value are listed here (a test checks the list
against click's), so `--id report` is an id, not the `report` command. Commands that run
no pytest skip the child and do not even import it: `--list` must start fast.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

COMMANDS = frozenset({"run", "plan", "validate", "report", "merge", "mutate", "history", "init"})
RUN_PYTEST = frozenset({"run", "validate", "init"})
NO_PYTEST_FLAGS = frozenset({"--list", "-h", "--help", "--version"})
TAKES_VALUE = frozenset(
    {
        "--baseline", "--budget", "--by", "--changed", "--detect-flakes", "--durations-file",
        "--env", "--fail-under", "--format", "--gate", "--history-file", "--html", "--id", "--json",
        "--junit", "--last", "--level", "--markdown", "--mutation", "--output", "--pattern",
        "--registry", "--sample", "--seed", "--shard", "--tier", "--time-budget",
        "--timeout", "--workers", "-o",
    }
)  # fmt: skip


def runs_pytest(args: Sequence[str]) -> bool:
    """Whether this command line starts a pytest run (so a warm child is worth having)."""
    command, flags = "run", set()
    found = False
    i = 0
    while i < len(args) and args[i] != "--":
        arg = args[i]
        if arg in TAKES_VALUE:
            i += 1  # its value, whatever it looks like
        elif arg.startswith("-"):
            flags.add(arg.split("=", 1)[0])
        elif arg in COMMANDS and not found:
            command, found = arg, True
        i += 1
    return command in RUN_PYTEST and not flags & NO_PYTEST_FLAGS


def main(argv: list[str] | None = None) -> int:
    from runner import output, signals  # noqa: PLC0415 - first: a stop signal is never lost

    signals.install()
    output.protect()
    if runs_pytest(sys.argv[1:] if argv is None else argv):
        from runner.supervisor import prewarm  # noqa: PLC0415

        prewarm.start(prewarm.base_env())
    from runner.cli import main as cli_main  # noqa: PLC0415 - after the child is started

    return cli_main(argv)


def console() -> NoReturn:
    """The process's entry point: `main`, then leave without tearing the interpreter down.
    With click, rich and psutil loaded the teardown took 20-45 ms of every run (and of
    `--list`) after all was done; output is flushed and the exit handlers (the prewarmed
    child, the private import directory) run first. Every report is closed by then."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    atexit._run_exitfuncs()  # what the interpreter's exit would run, in the same order
    os._exit(code)
