"""Markdown summary for people: `$GITHUB_STEP_SUMMARY` or `--markdown PATH`."""

from __future__ import annotations

import html

from runner.errors import ExitCode
from runner.model import Entry
from runner.reports.tables import (
    BASELINE_COLUMNS,
    TIER_COLUMNS,
    attention,
    baseline_head,
    baseline_rows,
    mutation_line,
    printable,
    quarantine_line,
    quarantined,
    reasons_shown,
    recall_line,
    tier_rows,
    took,
)
from runner.results import EntryResult, Status
from runner.summary import money
from runner.verdict import Outcome

_ICON: dict[int, str] = {
    ExitCode.OK: "✅",
    ExitCode.TESTS_FAILED: "❌",
    ExitCode.EMPTY_SELECTION: "❔",
    ExitCode.GATE_FAILED: "⚠️",
    ExitCode.RUN_BROKEN: "💥",
}
STOPPED = "⏹️"  # a stop signal's code


LIMIT = 1_000_000  # bytes: GitHub drops a step summary over 1 MiB whole


def render_markdown(outcome: Outcome, limit: int = LIMIT, full: str = "") -> str:
    """The summary a PR comment or a job's step summary shows, at most `limit` bytes: a
    longer one is cut at a line, saying how much was left out and where `full` is."""
    lines = _lines(outcome)
    text = "\n".join(lines) + "\n"
    return text if len(text.encode()) <= limit else _cut(lines, limit, full)


def _cut(lines: list[str], limit: int, full: str) -> str:
    kept: list[str] = []
    size, budget = 0, max(limit - 400, 0)  # room for the notice
    for line in lines:
        size += len(line.encode()) + 1
        if size > budget:
            break
        kept.append(line)
    where = f"; the full report: `{_cell(full)}`" if full else ""
    notice = (
        f"_… {len(lines) - len(kept)} more lines not shown (the summary is limited to "
        f"{limit:,} bytes){where}._"
    )
    return "\n".join([*kept, "", notice]) + "\n"


def _lines(outcome: Outcome) -> list[str]:
    total = outcome.summary.total
    lines = [
        f"## {_ICON.get(outcome.exit_code, STOPPED)} Revenue protection: "
        f"{money(total.protected)} of {money(total.registered_mrr)} MRR protected "
        f"({total.coverage_text})",
        "",
        f"Level `{outcome.run.level}` · exit code {outcome.exit_code} · "
        f"{took(outcome, 1)}"
        + (f" · environment `{outcome.environment}`" if outcome.environment else ""),
        "",
        "| " + " | ".join(TIER_COLUMNS) + " |",
        "|---|" + "---:|" * (len(TIER_COLUMNS) - 1),
    ]
    *tiers, last = tier_rows(outcome)
    lines += [_row(cells) for cells in tiers]
    lines.append(_row(last, bold=True))
    extra = [line for line in (mutation_line(outcome), recall_line(outcome)) if line]
    lines += [item for line in extra for item in ("", _line(line))]
    sections = _why(outcome) + _gate(outcome) + _baseline(outcome) + _failures(outcome)
    sections += _quarantined(outcome)
    return lines + sections + _unverified(outcome)


def _baseline(outcome: Outcome) -> list[str]:
    head = baseline_head(outcome)
    if head is None:
        return []
    rows = baseline_rows(outcome)
    table = ["", "| " + " | ".join(BASELINE_COLUMNS) + " |", "|---" * len(BASELINE_COLUMNS) + "|"]
    body = [_row([_cell(c) for c in cells]) for cells in rows]
    return ["", "### Since the baseline", "", _line(head), *(table + body if rows else [])]


def _quarantined(outcome: Outcome) -> list[str]:
    carried = quarantined(outcome)
    if not carried:
        return []
    total = outcome.summary.total
    head = f"### Quarantined: {money(total.quarantined)} MRR carried knowingly, not protected"
    return ["", head, "", *(f"- {_cell(quarantine_line(e, r))}" for e, r in carried)]


def _why(outcome: Outcome) -> list[str]:
    reasons = reasons_shown(outcome)
    return ["", "Why it is not green:", *(f"- {_cell(r.text)}" for r in reasons)] if reasons else []


def _row(cells: list[str], bold: bool = False) -> str:
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
    bad = attention(outcome)
    if not bad:
        return []
    owners = ", ".join(f"{o} {money(m)}" for o, m in outcome.summary.at_risk_by_owner)
    return [
        *FAILURE_HEAD,
        *(_failure_row(e, r) for e, r in bad),
        "",
        f"MRR at risk by owner: {owners or 'none'}",
    ]


def _failure_row(e: Entry, result: EntryResult) -> str:
    first = result.headline
    return (
        f"| `{e.id}` | {result.status} | {e.tier} | {money(e.mrr)} | {e.owner} | {_cell(first)} |"
    )


def _unverified(outcome: Outcome) -> list[str]:
    unverified = [
        r
        for r in outcome.run.entries
        if r.status in (Status.NOT_RUN, Status.PENDING, Status.SKIPPED, Status.PARTIAL)
        and r.left_out != "quarantine"
    ]
    if not unverified:
        return []
    lines = ["", "### Selected but unverified", ""]
    for result in unverified:
        e = outcome.registry.by_id[result.entry_id]
        lines.append(f"- `{e.id}` ({money(e.mrr)}, {result.status}): {_cell(result.note)}")
    return lines


def _cell(text: str, limit: int = 200) -> str:
    """Text for one line (or table cell) of Markdown: no control characters, no markup a
    test's message could inject (GitHub renders HTML in a step summary)."""
    plain = html.escape(printable(text), quote=False).replace("|", "\\|")
    return plain.replace("\n", " ")[:limit]


def _line(text: str) -> str:
    """A sentence of the runner's own (a recall, a comparison): never cut mid-number."""
    return _cell(text, limit=6 * len(text))  # room for every escape
