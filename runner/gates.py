"""Stage gates: conditions from the registry a finished run must meet for CI to go on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runner.model import Gate, Registry
from runner.results import PROTECTING, EntryResult, Status
from runner.summary import Summary, money

# what a gate's require_* accepts: passed, and quarantined (carried knowingly, bounded by
# max_quarantined_mrr)
CARRIED = PROTECTING | {Status.QUARANTINED}


@dataclass(frozen=True, kw_only=True)
class GateVerdict:
    name: str
    held: bool
    failures: tuple[str, ...] = ()


def _percent_failure(minimum: float, summary: Summary) -> list[str]:
    coverage = summary.total.coverage
    if coverage is None:
        return ["no MRR is registered: no share of it can be protected"]
    if coverage >= minimum:
        return []
    return [
        f"protected MRR is {coverage:.1f}% of registered, below {minimum:g}% "
        f"(short by {money(_short_by_percent(minimum, summary))})"
    ]


def evaluate_gate(
    gate: Gate, registry: Registry, results: Iterable[EntryResult], summary: Summary
) -> GateVerdict:
    """Check each condition of `gate`; every unmet one is named with how far it fell short."""
    results = list(results)
    failures = [*_tier_failures(gate, registry, results), *_all_failures(gate, results)]
    total = summary.total
    if gate.min_protected_percent is not None:
        failures += _percent_failure(gate.min_protected_percent, summary)
    if gate.min_protected_mrr is not None and total.protected < gate.min_protected_mrr:
        failures.append(
            f"protected MRR is {money(total.protected)}, below "
            f"{money(gate.min_protected_mrr)} (short by "
            f"{money(gate.min_protected_mrr - total.protected)})"
        )
    carried = total.quarantined
    if gate.max_quarantined_mrr is not None and carried > gate.max_quarantined_mrr:
        failures.append(
            f"quarantined MRR is {money(carried)}, above {money(gate.max_quarantined_mrr)} "
            f"(max_quarantined_mrr; {total.quarantined_entries} entries carried)"
        )
    return GateVerdict(name=gate.name, held=not failures, failures=tuple(failures))


def _short_by_percent(percent: float, summary: Summary) -> float:
    return percent / 100.0 * summary.total.registered_mrr - summary.total.protected


def _tier_failures(gate: Gate, registry: Registry, results: list[EntryResult]) -> list[str]:
    out = []
    for tier in gate.require_tiers:
        bad = [
            r
            for r in results
            if registry.by_id[r.entry_id].tier == tier and r.status not in CARRIED
        ]
        if bad:
            mrr = sum(registry.by_id[r.entry_id].mrr for r in bad)
            out.append(
                f"tier {tier}: {len(bad)} selected entries did not pass ({money(mrr)} MRR): "
                + ", ".join(f"{r.entry_id} ({r.status})" for r in bad[:5])
            )
    return out


def _all_failures(gate: Gate, results: list[EntryResult]) -> list[str]:
    bad = [r for r in results if r.status not in CARRIED]
    if gate.require_all and bad:
        return [f"require_all: {len(bad)} of {len(results)} selected entries did not pass"]
    return []
