"""Read a JSON run report back into results: for `report` (re-render) and `merge` (shards)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.orchestrate import RunResult
from runner.report_json import SCHEMA, SCHEMA_VERSION
from runner.results import Attempt, EntryResult, Status, TestResult


def read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not a JSON report ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{path}: not a unified-test-runner run report")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(f"{path}: schema version {data.get('schema_version')} is not supported")
    return data


def run_from_report(data: dict[str, Any]) -> RunResult:
    meta = data["run"]
    return RunResult(
        level=meta["level"],
        started_at=meta["started_at"],
        duration=float(meta["duration_s"]),
        entries=tuple(_entry(e) for e in data["tests"]),
        unregistered=tuple(data.get("unregistered", ())),
        broken=tuple(meta.get("broken", ())),
        warnings=tuple(meta.get("warnings", ())),
        interrupted=bool(meta.get("interrupted")),
        timed_out=bool(meta.get("timed_out")),
        pytest_exit=meta.get("pytest_exit"),
        log_file=meta.get("log_file", ""),
        extra=_extra(meta),
    )


def _extra(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in ("shard", "selection", "environment", "changed") if k in meta}


def _entry(data: dict[str, Any]) -> EntryResult:
    return EntryResult(
        entry_id=data["id"],
        status=Status(data["status"]),
        note=data["note"],
        tests=tuple(_test(data["id"], t) for t in data["tests"]),
    )


def _test(entry_id: str, data: dict[str, Any]) -> TestResult:
    return TestResult(
        nodeid=data["nodeid"],
        entry_id=entry_id,
        status=Status(data["status"]),
        duration=float(data["duration_s"]),
        message=data["message"],
        longrepr=data["longrepr"],
        output=data["output"],
        worker=str(data.get("worker", "")),
        attempts=tuple(
            Attempt(
                number=a["number"],
                status=Status(a["status"]),
                duration=float(a["duration_s"]),
                message=a["message"],
            )
            for a in data["attempts"]
        ),
    )
