"""The console entry point: start a pytest child warming up, then parse the command line.

Importing click and the runner takes a good part of a run's start-up; a pytest child
started first (runner.prewarm) imports pytest on the other core meanwhile.
"""

from __future__ import annotations

import sys

from runner import prewarm


def main(argv: list[str] | None = None) -> int:
    prewarm.start(sys.argv[1:] if argv is None else argv, prewarm.base_env())
    from runner.cli import main as cli_main  # noqa: PLC0415 - after the child is started

    return cli_main(argv)
