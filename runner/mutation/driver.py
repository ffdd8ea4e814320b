"""Running the entries that cover a mutant, through the runner itself.

Each mutant gets a full runner run of its entries (`--id` each, a JSON report), so
timeouts, crash handling, cleanup and the event stream apply as in any run: a mutant that
makes the tests hang is stopped by the runner's timeout and counts as killed. The outcome
per entry is read from that report.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from runner import signals
from runner.mutation.score import KILLED, SURVIVED, TIMED_OUT

RUNNER_PARENT = str(Path(__file__).resolve().parent.parent.parent)
_BOOT = (
    "import sys; sys.path.insert(0, {parent!r}); from runner.entry import main; sys.exit(main())"
)
KILLING = frozenset({"failed", "error", "timed_out", "not_run", "skipped", "partial"})


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One runner run: each entry's outcome, how long it took, and how it ended."""

    outcomes: dict[str, str]  # entry id -> killed, survived or timed_out
    durations: dict[str, float]  # entry id -> seconds its tests took
    seconds: float
    exit_code: int
    stopped: bool = False  # a stop signal ended it: not an outcome to record


def runner_command(*args: str) -> list[str]:
    """This runner, whatever the project's own packages are called."""
    return [sys.executable, "-c", _BOOT.format(parent=RUNNER_PARENT), *args]


def trial(root: Path, registry: Path, entry_ids: list[str], timeout: float) -> Trial:
    """Run `entry_ids` once (against whatever code is on disk now)."""
    with tempfile.TemporaryDirectory(prefix="utr-mutant-") as tmp:
        report = Path(tmp) / "run.json"
        ids = [arg for entry_id in entry_ids for arg in ("--id", entry_id)]
        argv = runner_command("--registry", str(registry), *ids, "--json", str(report))
        argv += ["--timeout", f"{timeout:g}", "--no-history", "--no-record-durations"]
        started = time.monotonic()
        code, stopped = _run(argv, root, Path(tmp) / "runner.log", timeout + 60)
        outcomes, durations = _outcomes(report, entry_ids)
        return Trial(
            outcomes=outcomes,
            durations=durations,
            seconds=time.monotonic() - started,
            exit_code=code,
            stopped=stopped,
        )


def _run(argv: list[str], root: Path, log: Path, limit: float) -> tuple[int, bool]:
    """The runner in a session of its own; a stop signal is passed on to it."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + limit
        while proc.poll() is None:
            if signals.requested() or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)  # it stops its tests, writes its report
                proc.wait()
                return proc.returncode, True
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.1)
    return proc.returncode, False


def _outcomes(report: Path, entry_ids: list[str]) -> tuple[dict[str, str], dict[str, float]]:
    """Per entry, from the run's report: a failing, hanging or broken entry killed it."""
    try:
        data = json.loads(report.read_text())["tests"]
        entries = {e["id"]: (str(e["status"]), float(e["duration_s"])) for e in data}
    except (OSError, ValueError, KeyError, TypeError):
        return dict.fromkeys(entry_ids, KILLED), {}  # the run broke before it could say
    found = {}
    for entry_id in entry_ids:
        status = entries.get(entry_id, ("not_run", 0.0))[0]
        found[entry_id] = (
            TIMED_OUT if status == "timed_out" else KILLED if status in KILLING else SURVIVED
        )
    return found, {i: d for i, (_, d) in entries.items()}
