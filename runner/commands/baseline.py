"""The baseline a run is compared with: `--baseline REPORT.json`, else the last run of
its level on record in the history (not with `--no-baseline` or `--no-history`)."""

from __future__ import annotations

from pathlib import Path

from runner import history
from runner.baseline import Baseline, from_report
from runner.errors import UsageError
from runner.reports.reader import read_report
from runner.request import RunRequest


def load_baseline(request: RunRequest, root: Path, level: str) -> Baseline | None:
    """Read before the run starts: a report that cannot be a baseline is a usage error."""
    if request.baseline is not None:
        return _from_file(request.baseline)
    if request.history_baseline and request.history_file is not None:
        return history.last_run(root / request.history_file, level)
    return None


def _from_file(path: Path) -> Baseline:
    data = read_report(path)
    try:
        return from_report(str(path), data)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: a run report without what a baseline needs ({exc})") from None
