"""The JSON run report: a documented, versioned schema (docs/report-schema.md)."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict
from typing import Any

import runner
from runner.gates import GateVerdict
from runner.model import Entry, Registry
from runner.recall import observed
from runner.results import ChildRun, EntryResult, Status, TestResult
from runner.summary import TierSummary
from runner.verdict import Outcome

SCHEMA = "unified-test-runner/run"
SCHEMA_VERSION = 2


def to_dict(outcome: Outcome) -> dict[str, Any]:
    run = outcome.run
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run": _run_meta(outcome),
        "exit_code": outcome.exit_code,
        "verdict": {
            "exit_code": outcome.exit_code,
            "reasons": [{"code": r.code, "text": r.text} for r in outcome.reasons],
        },
        "tests": [_entry(outcome.registry, e) for e in run.entries],
        "tiers": [
            _tier(t, n) for n, t in zip(outcome.registry.tiers, outcome.summary.tiers, strict=True)
        ],
        "total": _tier(outcome.summary.total, None),
        "at_risk_by_owner": [{"owner": o, "mrr": m} for o, m in outcome.summary.at_risk_by_owner],
        "unregistered": list(run.unregistered),
        "gate": _gate(outcome.gate),
        "baseline": outcome.comparison.as_dict() if outcome.comparison else None,
        "selection_recall": _recall(outcome),
    }


def _recall(outcome: Outcome) -> dict[str, Any] | None:
    found = observed(outcome)
    return None if found is None else found.as_dict()


def _run_meta(outcome: Outcome) -> dict[str, Any]:
    run = outcome.run
    return {
        "started_at": run.started_at,
        "duration_s": run.duration,
        **({"shard_durations_s": list(run.shard_durations)} if run.shard_durations else {}),
        "level": run.level,
        "registry": str(outcome.registry.path),
        "root": str(outcome.registry.root),
        "pytest_args": list(outcome.pytest_args),
        "pytest_exit": next((c.returncode for c in run.children), None),
        "interrupted": run.interrupted,
        "interrupted_by": run.interrupted_by,
        "timed_out": run.timed_out,
        "timeout_s": run.timeout,
        "broken": list(outcome.broken),
        "problems": list(run.problems),
        "warnings": list(run.warnings),
        "children": [_child(c) for c in run.children],
        "log_file": run.log_file,
        "runner_version": runner.__version__,
        "python": sys.version.split()[0],
        "host": platform.node(),
        **run.context.as_dict(),
    }


def _entry(registry: Registry, result: EntryResult) -> dict[str, Any]:
    entry = registry.by_id[result.entry_id]
    return {
        "id": entry.id,
        "name": entry.name,
        "tier": entry.tier,
        "mrr": entry.mrr,
        "level": entry.level,
        "owner": entry.owner,
        "path": entry.path,
        "status": result.status,
        "duration_s": result.duration,
        "note": result.note,
        "message": result.message,
        "collect_error": result.collect_error,
        "left_out": result.left_out,
        **_quarantine(entry, result),
        "tests": [_test(t) for t in result.tests],
    }


def _quarantine(entry: Entry, result: EntryResult) -> dict[str, Any]:
    """A quarantined entry: its quarantine, and what the entry would have been."""
    q = entry.quarantine
    if result.status is not Status.QUARANTINED or q is None:
        return {}
    outcome = result.outcome or Status.NOT_RUN
    body = {"mode": q.mode, "owner": q.owner, "reason": q.reason, "ticket": q.ticket}
    return {
        "quarantine": {**body, "until": q.until.isoformat(), "tests": list(q.tests)},
        "outcome": outcome,
    }


def _test(test: TestResult) -> dict[str, Any]:
    return {
        "nodeid": test.nodeid,
        "status": test.status,
        "duration_s": test.duration,
        "message": test.message,
        "longrepr": test.longrepr,
        "output": test.output,
        **({"worker": test.worker} if test.worker else {}),
        "attempts": [
            {"number": a.number, "status": a.status, "duration_s": a.duration, "message": a.message}
            for a in test.attempts
        ],
    }


def _child(child: ChildRun) -> dict[str, Any]:
    data = asdict(child)
    data["internal_errors"] = list(child.internal_errors)
    data["crashed"] = [{"nodeid": n, "worker": w} for n, w in child.crashed]
    data["workers_down"] = list(child.workers_down)
    return data


def _tier(row: TierSummary, number: int | None) -> dict[str, Any]:
    body = {"tier": number} if number is not None else {}
    return {
        **body,
        "label": row.label,
        "registered": row.registered,
        "selected": row.selected,
        "passed": row.passed,
        "failed": row.failed,
        "skipped": row.skipped,
        "flaky": row.flaky,
        "registered_mrr": row.registered_mrr,
        "protected_mrr": row.protected,
        "at_risk_mrr": row.at_risk,
        "unverified_mrr": row.unverified,
        "quarantined_mrr": row.quarantined,
        "coverage_percent": None if row.coverage is None else round(row.coverage, 2),
    }


def _gate(gate: GateVerdict | None) -> dict[str, Any] | None:
    if gate is None:
        return None
    return {"name": gate.name, "held": gate.held, "failures": list(gate.failures)}
