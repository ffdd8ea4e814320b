"""The revenue math, computed only from the registry and the results."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runner.model import Entry, Registry
from runner.results import FAILING, PROTECTING, EntryResult, Status


@dataclass(frozen=True, kw_only=True)
class TierSummary:
    """One row of the revenue-protection table (a tier, or the total)."""

    label: str
    registered: int
    selected: int
    passed: int
    failed: int
    skipped: int
    flaky: int
    registered_mrr: float
    protected: float
    at_risk: float
    quarantined: float = 0.0  # MRR of quarantined entries: part of the unverified
    quarantined_entries: int = 0

    @property
    def unverified(self) -> float:
        return self.registered_mrr - self.protected - self.at_risk

    @property
    def coverage(self) -> float | None:
        """Protected MRR as a percentage of registered MRR; None (not applicable) when no
        MRR is registered: $0 of $0 is not 100% protected."""
        return 100.0 * self.protected / self.registered_mrr if self.registered_mrr else None

    @property
    def coverage_text(self) -> str:
        return "n/a" if self.coverage is None else f"{self.coverage:.1f}%"


@dataclass(frozen=True, kw_only=True)
class Summary:
    tiers: tuple[TierSummary, ...]
    total: TierSummary
    at_risk_by_owner: tuple[tuple[str, float], ...]


def summarize(registry: Registry, results: Iterable[EntryResult]) -> Summary:
    """Per tier and in total: protected (passed), at risk (failed), unverified (the rest)."""
    by_id = {r.entry_id: r for r in results}
    rows = tuple(
        _row(f"Tier {n}: {t.name}", [e for e in registry.tests if e.tier == n], by_id)
        for n, t in registry.tiers.items()
    )
    return Summary(
        tiers=rows,
        total=_row("Total", list(registry.tests), by_id),
        at_risk_by_owner=_owners(registry.tests, by_id),
    )


def _row(label: str, entries: list[Entry], by_id: Mapping[str, EntryResult]) -> TierSummary:
    statuses = [(e, by_id[e.id].status) for e in entries if e.id in by_id]
    return TierSummary(
        label=label,
        registered=len(entries),
        selected=len(statuses),
        passed=sum(s is Status.PASSED for _, s in statuses),
        failed=sum(s in FAILING for _, s in statuses),
        skipped=sum(s is Status.SKIPPED for _, s in statuses),
        flaky=sum(s is Status.FLAKY for _, s in statuses),
        registered_mrr=sum(e.mrr for e in entries),
        protected=sum(e.mrr for e, s in statuses if s in PROTECTING),
        at_risk=sum(e.mrr for e, s in statuses if s in FAILING),
        quarantined=sum(e.mrr for e, s in statuses if s is Status.QUARANTINED),
        quarantined_entries=sum(s is Status.QUARANTINED for _, s in statuses),
    )


def _owners(
    entries: Iterable[Entry], by_id: Mapping[str, EntryResult]
) -> tuple[tuple[str, float], ...]:
    risk: dict[str, float] = {}
    for entry in entries:
        if entry.id in by_id and by_id[entry.id].status in FAILING:
            risk[entry.owner] = risk.get(entry.owner, 0.0) + entry.mrr
    return tuple(sorted(risk.items(), key=lambda kv: (-kv[1], kv[0])))


def entries(count: int) -> str:
    """'1 entry', '3 entries': registry entries, never to be read as pytest tests."""
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def money(amount: float) -> str:
    """Dollars as a user reads them: $25,000 (cents only when there are any)."""
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    text = f"{amount:,.0f}" if float(amount).is_integer() else f"{amount:,.2f}"
    return f"{sign}${text}"


_COUNTED = (
    ("passed", (Status.PASSED, Status.FLAKY)),
    ("failed", (Status.FAILED, Status.ERROR, Status.TIMED_OUT)),
    ("skipped", (Status.SKIPPED,)),
    ("xfailed", (Status.XFAILED,)),
    ("xpassed", (Status.XPASSED,)),
    ("deselected", (Status.DESELECTED,)),
    ("not run", (Status.NOT_RUN,)),
)
_ALWAYS = frozenset({"passed", "failed", "skipped", "not run"})


def test_counts(results: Iterable[EntryResult]) -> dict[str, int]:
    """pytest tests by outcome (not entries): the four usual ones always, others if any."""
    tests = [t for r in results for t in r.tests]
    counts = {label: sum(t.status in kinds for t in tests) for label, kinds in _COUNTED}
    return {k: n for k, n in counts.items() if n or k in _ALWAYS}
