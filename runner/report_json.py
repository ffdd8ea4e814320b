"""The JSON run report: a documented, versioned schema (docs/report-schema.md)."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from typing import Any

import runner
from runner.gates import GateVerdict
from runner.model import Registry
from runner.orchestrate import RunResult
from runner.results import EntryResult, TestResult
from runner.summary import Summary, TierSummary

SCHEMA = "unified-test-runner/run"
SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """A finished run with its verdict: what every report renders."""

    registry: Registry
    run: RunResult
    summary: Summary
    gate: GateVerdict | None
    exit_code: int
    pytest_args: tuple[str, ...] = ()

    @property
    def environment(self) -> str | None:
        """The `--env` profile the run used, if any."""
        profile = self.run.extra.get("environment")
        return str(profile["name"]) if isinstance(profile, dict) else None


def to_dict(outcome: Outcome) -> dict[str, Any]:
    run = outcome.run
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run": _run_meta(outcome),
        "exit_code": outcome.exit_code,
        "tests": [_entry(outcome.registry, e) for e in run.entries],
        "tiers": [
            _tier(t, n) for n, t in zip(outcome.registry.tiers, outcome.summary.tiers, strict=True)
        ],
        "total": _tier(outcome.summary.total, None),
        "at_risk_by_owner": [{"owner": o, "mrr": m} for o, m in outcome.summary.at_risk_by_owner],
        "unregistered": list(run.unregistered),
        "gate": _gate(outcome.gate),
    }


def _run_meta(outcome: Outcome) -> dict[str, Any]:
    run = outcome.run
    return {
        "started_at": run.started_at,
        "duration_s": run.duration,
        "level": run.level,
        "registry": str(outcome.registry.path),
        "root": str(outcome.registry.root),
        "pytest_args": list(outcome.pytest_args),
        "pytest_exit": run.pytest_exit,
        "interrupted": run.interrupted,
        "timed_out": run.timed_out,
        "broken": list(run.broken),
        "warnings": list(run.warnings),
        "log_file": run.log_file,
        "runner_version": runner.__version__,
        "python": sys.version.split()[0],
        "host": platform.node(),
        **run.extra,
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
        "tests": [_test(t) for t in result.tests],
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
        "coverage_percent": round(row.coverage, 2),
    }


def _gate(gate: GateVerdict | None) -> dict[str, Any] | None:
    if gate is None:
        return None
    return {"name": gate.name, "held": gate.held, "failures": list(gate.failures)}
