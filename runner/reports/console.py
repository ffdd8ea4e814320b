"""The revenue-protection summary for a person at a terminal (rich)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner.errors import ExitCode
from runner.reports.tables import (
    AT_RISK,
    FAILED,
    PROTECTED,
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
    unregistered_lines,
    unverified_text,
)
from runner.results import Status
from runner.summary import money, test_counts
from runner.verdict import Outcome

_VERDICT: dict[int, tuple[str, str]] = {
    ExitCode.OK: ("PASSED", "bold green"),
    ExitCode.TESTS_FAILED: ("FAILED", "bold red"),
    ExitCode.EMPTY_SELECTION: ("NOT VERIFIED", "bold yellow"),
    ExitCode.GATE_FAILED: ("GATE NOT MET", "bold yellow"),
    ExitCode.RUN_BROKEN: ("RUN BROKEN", "bold red"),
}


def make_console(stderr: bool = False) -> Console:
    """Colour only on a terminal and without NO_COLOR; plain lines otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    plain = bool(os.environ.get("NO_COLOR")) or not stream.isatty()
    return Console(
        file=stream,
        no_color=plain,
        highlight=False,
        soft_wrap=False,
        width=None if stream.isatty() else 140,
        emoji=False,
    )


@contextlib.contextmanager
def text_console(output: Path | None) -> Iterator[Console]:
    """The terminal's console, or a plain one writing to `output`."""
    if output is None:
        yield make_console()
        return
    with output.open("w", encoding="utf-8") as handle:
        yield Console(file=handle, no_color=True, width=140)


def render_summary(console: Console, outcome: Outcome) -> None:
    console.print()
    console.print(_table(outcome))
    _failures(console, outcome)
    for entry, result in quarantined(outcome):
        console.print(Text(printable(f"q {quarantine_line(entry, result)}"), style="magenta"))
    _notes(console, outcome)
    _gate(console, outcome)
    _verdict(console, outcome)
    line = mutation_line(outcome)
    if line:
        console.print(line, highlight=False)
    _baseline(console, outcome)
    recall = recall_line(outcome)
    if recall:
        console.print(Text(printable(recall)), soft_wrap=True)
    console.print(_test_counts(outcome), highlight=False)


SHOWN_CHANGES = 50  # a baseline from another registry can change every entry


def _baseline(console: Console, outcome: Outcome) -> None:
    head = baseline_head(outcome)
    if head is None:
        return
    console.print(Text(printable(head)), soft_wrap=True)
    rows = baseline_rows(outcome)
    for entry_id, tier, mrr, change, then, now in rows[:SHOWN_CHANGES]:
        style = {"new failure": "red", "fixed": "green"}.get(change, "")
        text = f"  {change}: {entry_id} (tier {tier}, {mrr} MRR), {then} -> {now}"
        console.print(Text(printable(text), style=style), soft_wrap=True)
    if len(rows) > SHOWN_CHANGES:
        console.print(f"  and {len(rows) - SHOWN_CHANGES} more changes (all in the JSON report)")


def _test_counts(outcome: Outcome) -> str:
    """The plain closing line CI log readers look for: pytest tests, not entries."""
    counts = test_counts(outcome.run.entries)
    return "pytest tests: " + ", ".join(f"{n} {label}" for label, n in counts.items())


def _table(outcome: Outcome) -> Table:
    table = Table(title="Revenue protection", title_justify="left", show_footer=False)
    for column in TIER_COLUMNS:
        table.add_column(column, justify="left" if column == "Tier" else "right", no_wrap=True)
    *tiers, total = tier_rows(outcome)
    for cells in tiers:
        table.add_row(*_styled(cells))
    table.add_section()
    table.add_row(*_styled(total), style="bold")
    return table


def _styled(cells: list[str]) -> list[str | Text]:
    styled: list[str | Text] = list(cells)
    styled[PROTECTED] = Text(cells[PROTECTED], style="green")
    for column in (FAILED, AT_RISK):
        nothing = cells[column] in ("0", "$0")
        styled[column] = Text(cells[column], style="" if nothing else "red")
    return styled


def _failures(console: Console, outcome: Outcome) -> None:
    for entry, result in attention(outcome):
        mark = "~" if result.status is Status.FLAKY else "x"
        line = (
            f"{mark} {entry.id} [{result.status}] tier {entry.tier}, "
            f"{money(entry.mrr)} MRR ({entry.owner}): {result.headline}"
        )
        console.print(Text(printable(line), style="yellow" if mark == "~" else "red"))
    for owner, mrr in outcome.summary.at_risk_by_owner:
        console.print(f"  at risk for {owner}: {money(mrr)}")


def _notes(console: Console, outcome: Outcome) -> None:
    for broken in outcome.broken:
        console.print(Text(printable(f"run broken: {broken}"), style="bold red"), soft_wrap=True)
    for warning in outcome.run.warnings:
        console.print(Text(printable(f"warning: {warning}"), style="yellow"))
    for line in unregistered_lines(outcome.run.unregistered):
        console.print(Text(printable(f"  unregistered: {line}"), style="yellow"))
    for reason in reasons_shown(outcome, besides=(ExitCode.RUN_BROKEN,)):  # shown above
        console.print(Text(printable(f"why: {reason.text}"), style="yellow"), soft_wrap=True)


def _gate(console: Console, outcome: Outcome) -> None:
    gate = outcome.gate
    if gate is None:
        return
    style = "green" if gate.held else "bold yellow"
    console.print(Text(f"gate {gate.name!r}: {'held' if gate.held else 'NOT met'}", style=style))
    for failure in gate.failures:
        console.print(Text(f"  - {failure}", style="yellow"))


def _verdict(console: Console, outcome: Outcome) -> None:
    label, style = _VERDICT.get(outcome.exit_code, ("INTERRUPTED", "bold yellow"))
    total = outcome.summary.total
    console.print(
        Text(
            f"{label}: {money(total.protected)} of {money(total.registered_mrr)} MRR protected "
            f"({total.coverage_text}), {money(total.at_risk)} at risk, {unverified_text(total)}, "
            f"in {took(outcome)} (exit {outcome.exit_code})",
            style=style,
        )
    )
