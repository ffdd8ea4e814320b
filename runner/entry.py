"""The console entry point: start a pytest child warming up, then parse the command line.

Importing click and the runner takes a good part of a run's start-up; a pytest child
started first (runner.supervisor.prewarm) imports pytest on the other core meanwhile. Commands that
run no pytest skip it, and do not even import it: `--list` must start fast.
"""

from __future__ import annotations

import sys

NO_PYTEST = frozenset({"plan", "report", "merge", "history", "--list", "-h", "--help", "--version"})


def main(argv: list[str] | None = None) -> int:
    from runner import output, signals  # noqa: PLC0415 - first: a stop signal is never lost

    signals.install()
    output.protect()
    args = sys.argv[1:] if argv is None else argv
    if not NO_PYTEST.intersection(args):
        from runner.supervisor import prewarm  # noqa: PLC0415

        prewarm.start(prewarm.base_env())
    from runner.cli import main as cli_main  # noqa: PLC0415 - after the child is started

    return cli_main(argv)
