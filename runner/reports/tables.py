"""What every human-readable report shows, computed once: the tier table's cells, the
entries that need attention, the reasons a run is not green. Each renderer only formats."""

from __future__ import annotations

from runner.errors import ExitCode
from runner.model import Entry
from runner.recall import observed
from runner.results import EntryResult, Status
from runner.summary import TierSummary, money
from runner.verdict import Outcome, Reason

TIER_COLUMNS = (
    "Tier",
    "Entries",
    "Passed",
    "Failed",
    "Skipped",
    "Protected",
    "At risk",
    "Unverified",
    "Coverage",
)
FAILED, PROTECTED, AT_RISK = 3, 5, 6  # columns a renderer may colour


def tier_cells(row: TierSummary) -> list[str]:
    """One row of the revenue-protection table, in TIER_COLUMNS order."""
    flaky = f" (+{row.flaky} flaky)" if row.flaky else ""
    return [
        row.label,
        f"{row.selected}/{row.registered}",
        f"{row.passed}{flaky}",
        str(row.failed),
        str(row.skipped),
        money(row.protected),
        money(row.at_risk),
        money(row.unverified),
        row.coverage_text,
    ]


def tier_rows(outcome: Outcome) -> list[list[str]]:
    """Every tier's row, then the total's (last)."""
    return [tier_cells(r) for r in (*outcome.summary.tiers, outcome.summary.total)]


def attention(outcome: Outcome) -> list[tuple[Entry, EntryResult]]:
    """Failed, errored, timed out and flaky entries, in run order, with their entry."""
    registry = outcome.registry
    return [(registry.by_id[r.entry_id], r) for r in outcome.run.entries if r.needs_attention]


def quarantined(outcome: Outcome) -> list[tuple[Entry, EntryResult]]:
    """The entries the run carried in quarantine, in run order, with their entry."""
    registry = outcome.registry
    return [
        (registry.by_id[r.entry_id], r)
        for r in outcome.run.entries
        if r.status is Status.QUARANTINED
    ]


def quarantine_line(entry: Entry, result: EntryResult) -> str:
    """'checkout [quarantined, failed] tier 2, $5,000 MRR: muted until ... (T-1, team): why'"""
    q = entry.quarantine
    what = q.describe() if q is not None else result.note
    scope = f" ({len(q.tests)} pytest tests)" if q is not None and q.tests else ""
    return (
        f"{entry.id} [quarantined{scope}, {result.outcome or 'not run'}] tier {entry.tier}, "
        f"{money(entry.mrr)} MRR: {what}"
    )


def unverified_text(total: TierSummary) -> str:
    """'$3,000 unverified' or '$3,000 unverified ($1,000 of it quarantined)'."""
    text = f"{money(total.unverified)} unverified"
    if total.quarantined:
        text += f" ({money(total.quarantined)} of it quarantined)"
    return text


def reasons_shown(outcome: Outcome, *, besides: tuple[int, ...] = ()) -> list[Reason]:
    """Why the run is not green, but the gate (each report shows it in its own section)
    and the codes in `besides`."""
    skip = {ExitCode.GATE_FAILED, *besides}
    return [r for r in outcome.reasons if r.code not in skip]


# C0 controls but tab and newline, and DEL: a test's message may hold any byte, and an
# escape sequence must not reach a terminal (or a Markdown summary) from it
_CONTROLS = {c: "\ufffd" for c in (*range(0x09), *range(0x0B, 0x20), 0x7F)}


def unregistered_lines(nodeids: tuple[str, ...], shown: int = 10) -> list[str]:
    """Unregistered pytest tests counted per file, the files with the most first: twenty
    parameters of one function say less than the file they are in."""
    per_file: dict[str, int] = {}
    for nodeid in nodeids:
        path = nodeid.split("::", 1)[0]
        per_file[path] = per_file.get(path, 0) + 1
    ranked = sorted(per_file.items(), key=lambda item: (-item[1], item[0]))
    lines = [f"{path} ({n} pytest test{'s' if n != 1 else ''})" for path, n in ranked[:shown]]
    if len(ranked) > shown:
        rest = sum(n for _, n in ranked[shown:])
        lines.append(f"... and {len(ranked) - shown} more files ({rest} pytest tests)")
    return lines


def printable(text: str) -> str:
    """`text` with its control characters shown as U+FFFD."""
    return text.translate(_CONTROLS)


def took(outcome: Outcome, digits: int = 2) -> str:
    """How long the run took, wall clock; for merged shards, the slowest shard's time (what
    the pipeline waited) and the shards' total apart."""
    run = outcome.run
    text = f"{run.duration:.{digits}f} s"
    if len(run.shard_durations) > 1:
        total = sum(run.shard_durations)
        text += f" (the slowest of {len(run.shard_durations)} shards; {total:.{digits}f} s in all)"
    return text


def mutation_line(outcome: Outcome) -> str | None:
    """ "MRR verified by mutation", when the run was given a mutation result: each entry's
    MRR times the share of its mutants its tests kill."""
    scores = outcome.run.context.mutation
    if scores is None:
        return None
    verified = sum(e.mrr * scores[e.id] for e in outcome.registry.tests if e.id in scores)
    total = outcome.summary.total
    return (
        f"{money(round(verified))} of {money(total.registered_mrr)} MRR verified by mutation "
        f"({len(scores)} entries scored), beside {money(total.protected)} protected"
    )


BASELINE_COLUMNS = ("Entry", "Tier", "MRR", "Change", "Then", "Now")


def baseline_head(outcome: Outcome) -> str | None:
    """One line: what this run is compared with, the protected MRR's move, the counts."""
    comparison = outcome.comparison
    if comparison is None:
        return None
    counts = ", ".join(f"{n} {change}" for change, n in comparison.counts().items())
    sign = "+" if comparison.delta >= 0 else "-"
    return (
        f"Against {comparison.source}: protected MRR {sign}{money(abs(comparison.delta))} "
        f"({money(comparison.protected_before)} then, {money(comparison.protected_now)} now); "
        + (counts or "no entry changed")
    )


def baseline_rows(outcome: Outcome) -> list[list[str]]:
    """A row per entry that changed, in BASELINE_COLUMNS order; a removed entry has no
    tier or MRR any more."""
    comparison = outcome.comparison
    if comparison is None:
        return []
    entries = {e.id: e for e in outcome.registry.tests}
    now = {r.entry_id: str(r.status) for r in outcome.run.entries}
    rows = []
    for entry_id, change in comparison.changes.items():
        entry = entries.get(entry_id)
        rows.append(
            [
                entry_id,
                str(entry.tier) if entry else "-",
                money(entry.mrr) if entry else "-",
                str(change),
                comparison.before.get(entry_id, "-"),
                now.get(entry_id, "-"),
            ]
        )
    return rows


def recall_line(outcome: Outcome) -> str | None:
    """What `--changed REF --observe` measured: what skipping would have missed."""
    found = observed(outcome)
    if found is None:
        return None
    head = (
        f"--observe: the selection would have skipped {len(found.skipped)} entries "
        f"({money(found.skipped_mrr)} MRR); "
    )
    if found.recall is None or found.recall_mrr is None:
        return head + "nothing failed, so nothing was missed (recall not measured)"
    missed = f": {', '.join(found.missed)}" if found.missed else ""
    return head + (
        f"{len(found.missed)} of {found.failing} failing entries among them{missed}; "
        f"recall {found.recall:.0%}, {found.recall_mrr:.0%} of the MRR at risk"
    )
