"""`report`: re-render a saved run in any format. The outcome is judged again from what
the report holds, by the same verdict."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from runner import quarantine
from runner.errors import UsageError
from runner.registry.load import load_registry
from runner.reports.reader import load_run, read_report
from runner.results import RunResult
from runner.verdict import Outcome, judge

FORMATS = ("text", "json", "junit", "markdown", "html")


def report(run_json: Path, registry_path: Path, fmt: str, output: Path | None) -> int:
    data = read_report(run_json)
    gate = data.get("gate")
    outcome = judge_again(
        registry_path,
        load_run(run_json, data),
        gate.get("name") if isinstance(gate, dict) else None,
        tuple(str(a) for a in data["run"].get("pytest_args", ())),
    )
    emit(outcome, fmt, output)
    return 0  # the rendering worked; the run's own verdict is in what was rendered


def judge_again(
    registry_path: Path, run: RunResult, gate: str | None, pytest_args: tuple[str, ...]
) -> Outcome:
    """The outcome of a run read back from reports, against the registry it names."""
    registry = load_registry(registry_path)
    unknown = sorted({e.entry_id for e in run.entries} - set(registry.by_id))
    if unknown:
        raise UsageError(f"the report names entries the registry lacks: {', '.join(unknown)}")
    run = quarantine.revert_unhonoured(registry, run, gate, _day_of(run))
    return judge(registry, run, gate, pytest_args)


def _day_of(run: RunResult) -> date:
    """The day the run started: the quarantines in force then are those it is judged by."""
    try:
        return date.fromisoformat(run.started_at[:10])
    except ValueError:
        return date.today()


def emit(outcome: Outcome, fmt: str, output: Path | None) -> None:
    from runner.files import write_text  # noqa: PLC0415
    from runner.reports.console import render_summary, text_console  # noqa: PLC0415
    from runner.reports.files import RENDERERS  # noqa: PLC0415

    if fmt == "text":
        with text_console(output) as console:
            render_summary(console, outcome)
        return
    text = RENDERERS[fmt](outcome)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        write_text(output, text)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
