"""A mutation run for a person (a rich table, the survivors as diffs) and as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from runner.files import write_text
from runner.model import Registry
from runner.mutation.score import EntryScore, mrr_verified, to_dict
from runner.reports.console import make_console
from runner.reports.tables import printable
from runner.summary import money

SURVIVORS_SHOWN = 5  # per entry; the JSON has them all


def render(scores: list[EntryScore], registry: Registry) -> None:
    console = make_console()
    console.print()
    console.print(_table(scores))
    for score in scores:
        for survivor in score.survivors[:SURVIVORS_SHOWN]:
            console.print(
                Text(
                    f"survived {score.entry_id}: {survivor.path}:{survivor.line} "
                    f"{survivor.operator}",
                    style="yellow",
                )
            )
            console.print(Text(printable(survivor.diff.rstrip())), soft_wrap=True)
        if len(score.survivors) > SURVIVORS_SHOWN:
            console.print(f"  ... and {len(score.survivors) - SURVIVORS_SHOWN} more survivors")
    registered = registry.total_mrr()
    console.print(
        f"MRR verified by mutation: {money(round(mrr_verified(scores)))} of "
        f"{money(registered)} registered (sum of each entry's MRR x its score)"
    )


def _table(scores: list[EntryScore]) -> Table:
    table = Table(title="Mutation score by entry", title_justify="left")
    for column in (
        "Entry",
        "MRR",
        "Mutants",
        "Marked",
        "Run",
        "Killed",
        "Survived",
        "Timed out",
        "Score",
    ):
        table.add_column(column, justify="left" if column == "Entry" else "right", no_wrap=True)
    for s in scores:
        counts = (s.mutants, s.marked, s.run, s.killed, s.survived, s.timed_out)
        table.add_row(s.entry_id, money(s.mrr), *map(str, counts), _score(s))
    return table


def _score(s: EntryScore) -> str:
    if s.score is None:
        return "-"
    interval = s.interval
    shown = f"{100 * s.score:.1f}%"
    return shown + (f" ({100 * interval[0]:.0f}-{100 * interval[1]:.0f}%)" if interval else "")


def write_json(path: Path, scores: list[EntryScore], meta: dict[str, Any]) -> None:
    write_text(path, json.dumps(to_dict(scores, meta), indent=2) + "\n")
