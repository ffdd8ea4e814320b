"""How a pytest child starts: `python -c <boot>`, importing the runner's plugin under a
private package name.

The tests must see the user's environment and import path, not the runner's: putting the
runner's checkout on PYTHONPATH would let a test (or a subprocess it starts) import the
runner's own `tests` or `apex` packages in place of the project's. So the environment is
left alone, and the child adds to its own `sys.path` one directory that holds nothing but
`_utr_runner`, a link to this package. Its first entry is the working directory, as with
`python -m pytest`; pytest-xdist hands the same path to its workers.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ALIAS = "_utr_runner"
_BOOT = "import os, sys; sys.path[0] = os.getcwd(); sys.path.insert(1, {dir!r}); "
_dirs: list[Path] = []


def import_dir() -> Path:
    """The directory the child imports the runner from (made once per process)."""
    if not _dirs:
        made = Path(tempfile.mkdtemp(prefix="utr-path-"))
        package = Path(__file__).resolve().parent.parent  # runner/, of which this is child/
        (made / ALIAS).symlink_to(package, target_is_directory=True)
        _dirs.append(made)
        atexit.register(shutil.rmtree, made, ignore_errors=True)
    return _dirs[0]


def command(*args: str, entry: str = "run_pytest") -> list[str]:
    """`python -c` code that sets up the path and calls `entry` of this module with `args`."""
    code = _BOOT.format(dir=str(import_dir())) + f"from {ALIAS}.child.boot import {entry}; "
    return [sys.executable, "-c", code + f"sys.exit({entry}())", *args]


def plugin_module() -> str:
    return f"{ALIAS}.child.plugin"


def run_pytest() -> int:
    """In the child: pytest's own console entry point, on the arguments after the code."""
    import pytest  # noqa: PLC0415 - the child's only job

    return int(pytest.console_main())


def prewarmed() -> int:
    """In a prewarmed child: import pytest now, then wait for the run (see
    runner.supervisor.prewarm)."""
    import importlib  # noqa: PLC0415
    import json  # noqa: PLC0415

    import pytest  # noqa: PLC0415
    from _pytest.config import default_plugins  # noqa: PLC0415

    for name in default_plugins:
        try:
            importlib.import_module(f"_pytest.{name}")
        except ImportError:
            continue
    line = sys.stdin.buffer.readline()
    if not line:
        return 0  # the parent left without a run for us
    message = json.loads(line)
    _redirect(message["log"])
    os.environ.clear()
    os.environ.update(message["env"])
    tempfile.tempdir = None  # gettempdir() read TMPDIR before the run's was known
    sys.argv = ["pytest", *message["args"]]
    return int(pytest.console_main())


def _redirect(log: str) -> None:
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
