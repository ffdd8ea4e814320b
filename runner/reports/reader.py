"""Read a JSON run report back into results: for `report` (re-render) and `merge` (shards).

A report is input like any other: a truncated, non-UTF-8, older or partial file, or one
with a number that is not finite, is refused with one line naming what is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.reports.json_report import SCHEMA, SCHEMA_VERSION
from runner.results import Attempt, ChildRun, EntryResult, RunContext, RunResult, Status, TestResult

_CHILD_FIELDS = {f.name for f in fields(ChildRun)}


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a report may hold")


def read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{path}: not a JSON report ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{path}: not a unified-test-runner run report")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(
            f"{path}: schema version {data.get('schema_version')!r} is not supported "
            f"(this runner reads version {SCHEMA_VERSION}; re-run to get one)"
        )
    return data


def load_run(path: Path, data: dict[str, Any]) -> RunResult:
    """The run a report holds, or a UsageError naming the first thing missing or wrong."""
    try:
        return run_from_report(data)
    except KeyError as exc:
        raise UsageError(f"{path}: an incomplete run report (no {exc.args[0]!r})") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path}: a malformed run report ({exc})") from None


def run_from_report(data: dict[str, Any]) -> RunResult:
    meta = data["run"]
    return RunResult(
        level=str(meta["level"]),
        started_at=str(meta["started_at"]),
        duration=_seconds(meta["duration_s"]),
        entries=tuple(_entry(e) for e in data["tests"]),
        unregistered=tuple(str(u) for u in data["unregistered"]),
        warnings=tuple(str(w) for w in meta["warnings"]),
        children=tuple(_child(c) for c in meta["children"]),
        problems=tuple(str(p) for p in meta["problems"]),
        interrupted_by=str(meta["interrupted_by"]),
        timeout=_seconds(meta["timeout_s"]),
        log_file=str(meta["log_file"]),
        context=_context(meta),
        shard_durations=tuple(_seconds(s) for s in meta.get("shard_durations_s", ())),
    )


def _context(meta: dict[str, Any]) -> RunContext:
    return RunContext(
        shard=meta.get("shard"),
        selection=tuple(str(i) for i in meta.get("selection", ())),
        environment=meta.get("environment"),
        changed=meta.get("changed"),
        detect_flakes=int(meta.get("detect_flakes", 0)),
        mutation=_scores(meta.get("mutation")),
    )


def _scores(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    return {str(k): _fraction(v) for k, v in dict(value).items()}


def _fraction(value: Any) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{value!r} is not a mutation score")
    return number


def _seconds(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{value!r} is not a duration")
    return number


def _child(data: dict[str, Any]) -> ChildRun:
    values = {k: v for k, v in data.items() if k in _CHILD_FIELDS}
    values["crashed"] = tuple((str(c["nodeid"]), str(c["worker"])) for c in data["crashed"])
    values["internal_errors"] = tuple(data["internal_errors"])
    values["workers_down"] = tuple(data["workers_down"])
    return ChildRun(**values)


def _entry(data: dict[str, Any]) -> EntryResult:
    return EntryResult(
        entry_id=str(data["id"]),
        status=Status(data["status"]),
        note=str(data["note"]),
        collect_error=str(data["collect_error"]),
        left_out=str(data["left_out"]),
        tests=tuple(_test(str(data["id"]), t) for t in data["tests"]),
        outcome=Status(data["outcome"]) if data.get("outcome") else None,
    )


def _test(entry_id: str, data: dict[str, Any]) -> TestResult:
    return TestResult(
        nodeid=str(data["nodeid"]),
        entry_id=entry_id,
        status=Status(data["status"]),
        duration=_seconds(data["duration_s"]),
        message=str(data["message"]),
        longrepr=str(data["longrepr"]),
        output=str(data["output"]),
        worker=str(data.get("worker", "")),
        attempts=tuple(
            Attempt(
                number=int(a["number"]),
                status=Status(a["status"]),
                duration=_seconds(a["duration_s"]),
                message=str(a["message"]),
            )
            for a in data["attempts"]
        ),
    )
