"""Markdown summary for people: `$GITHUB_STEP_SUMMARY` or `--markdown PATH`."""

from __future__ import annotations

from runner.results import EntryResult, Status
from runner.summary import TierSummary, money
from runner.verdict import Outcome

_ICON = {0: "✅", 1: "❌", 3: "❔", 4: "⚠️", 5: "💥", 129: "⏹️", 130: "⏹️", 143: "⏹️"}


def render_markdown(outcome: Outcome) -> str:
    total = outcome.summary.total
    lines = [
        f"## {_ICON.get(outcome.exit_code, '')} Revenue protection: "
        f"{money(total.protected)} of {money(total.registered_mrr)} MRR protected "
        f"({total.coverage:.1f}%)",
        "",
        f"Level `{outcome.run.level}` · exit code {outcome.exit_code} · "
        f"{outcome.run.duration:.1f} s"
        + (f" · environment `{outcome.environment}`" if outcome.environment else ""),
        "",
        "| Tier | Tests | Passed | Failed | Skipped | Protected | At risk | Unverified "
        "| Coverage |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_row(r) for r in outcome.summary.tiers]
    lines.append(_row(total, bold=True))
    sections = _why(outcome) + _gate(outcome) + _failures(outcome) + _unverified(outcome)
    return "\n".join(lines + sections) + "\n"


def _why(outcome: Outcome) -> list[str]:
    reasons = [r for r in outcome.reasons if r.code != 4]  # the gate has its own section
    return ["", "Why it is not green:", *(f"- {_cell(r.text)}" for r in reasons)] if reasons else []


def _row(row: TierSummary, bold: bool = False) -> str:
    cells = [
        row.label,
        f"{row.selected}/{row.registered}",
        str(row.passed),
        str(row.failed),
        str(row.skipped),
        money(row.protected),
        money(row.at_risk),
        money(row.unverified),
        f"{row.coverage:.1f}%",
    ]
    return "| " + " | ".join(f"**{c}**" if bold else c for c in cells) + " |"


def _gate(outcome: Outcome) -> list[str]:
    gate = outcome.gate
    if gate is None:
        return []
    head = f"Gate `{gate.name}`: " + ("held ✅" if gate.held else "**not met** ⚠️")
    return ["", head, *(f"- {f}" for f in gate.failures)]


FAILURE_HEAD = [
    "",
    "### Failing and flaky tests",
    "",
    "| Test | Status | Tier | MRR | Owner | First failure |",
    "|---|---|---:|---:|---|---|",
]


def _failures(outcome: Outcome) -> list[str]:
    bad = [r for r in outcome.run.entries if r.needs_attention]
    if not bad:
        return []
    owners = ", ".join(f"{o} {money(m)}" for o, m in outcome.summary.at_risk_by_owner)
    return [
        *FAILURE_HEAD,
        *(_failure_row(outcome, r) for r in bad),
        "",
        f"MRR at risk by owner: {owners or 'none'}",
    ]


def _failure_row(outcome: Outcome, result: EntryResult) -> str:
    e = outcome.registry.by_id[result.entry_id]
    first = result.headline
    return (
        f"| `{e.id}` | {result.status} | {e.tier} | {money(e.mrr)} | {e.owner} | {_cell(first)} |"
    )


def _unverified(outcome: Outcome) -> list[str]:
    unverified = [
        r
        for r in outcome.run.entries
        if r.status in (Status.NOT_RUN, Status.PENDING, Status.SKIPPED, Status.PARTIAL)
    ]
    if not unverified:
        return []
    lines = ["", "### Selected but unverified", ""]
    for result in unverified:
        e = outcome.registry.by_id[result.entry_id]
        lines.append(f"- `{e.id}` ({money(e.mrr)}, {result.status}): {_cell(result.note)}")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:200]
