"""A self-contained HTML report for release managers: no script, no network, one file."""

from __future__ import annotations

from html import escape

from runner.errors import ExitCode
from runner.model import Entry
from runner.reports.tables import (
    BASELINE_COLUMNS,
    TIER_COLUMNS,
    attention,
    baseline_head,
    baseline_rows,
    mutation_line,
    reasons_shown,
    recall_line,
    tier_rows,
    took,
)
from runner.results import FAILING, EntryResult, Status
from runner.summary import TierSummary, money
from runner.verdict import Outcome

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{padding:.35rem .6rem;border-bottom:1px solid #e3e6ea;text-align:right}
th:first-child,td:first-child{text-align:left}
.verdict{padding:.8rem 1rem;border-radius:6px;font-weight:600}
.ok{background:#e6f6ea;color:#14532d}.bad{background:#fde8e8;color:#7f1d1d}
.warn{background:#fff4d6;color:#713f12}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:12px;text-align:left}
.legend span{display:inline-block;margin-right:1rem}
.sw{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}
"""
COLORS = {"protected": "#22a05a", "at risk": "#d64545", "unverified": "#b8bec7"}


def render_html(outcome: Outcome) -> str:
    body = [
        *_head(outcome),
        "<h2>MRR by tier</h2>",
        _chart(outcome),
        "<h2>Protected MRR over the recent runs</h2>",
        _trend(outcome),
        _tiers(outcome),
        *_why(outcome),
        *_gate(outcome),
        *_baseline(outcome),
        "<h2>Entries</h2>",
        _entries(outcome),
        *_failures(outcome),
        "<h2>Durations</h2>",
        _durations(outcome),
    ]
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<title>Revenue protection report</title>"
        f"<style>{CSS}</style><body>{''.join(body)}</body></html>\n"
    )


_CLASS: dict[int, str] = {
    ExitCode.OK: "ok",
    ExitCode.EMPTY_SELECTION: "warn",
    ExitCode.GATE_FAILED: "warn",
}


def _head(outcome: Outcome) -> list[str]:
    total = outcome.summary.total
    klass = _CLASS.get(outcome.exit_code, "bad")
    return [
        f"<h1>Revenue protection — level {escape(outcome.run.level)}"
        + (f", environment {escape(outcome.environment)}" if outcome.environment else "")
        + "</h1>",
        f'<p class="verdict {klass}">{money(total.protected)} of '
        f"{money(total.registered_mrr)} MRR protected ({total.coverage_text}), "
        f"{money(total.at_risk)} at risk, {money(total.unverified)} unverified — exit "
        f"{outcome.exit_code}, {escape(took(outcome, 1))}, started "
        f"{escape(outcome.run.started_at)}</p>",
        *(f"<p>{escape(t)}</p>" for t in (mutation_line(outcome), recall_line(outcome)) if t),
    ]


WIDTH, BAR, GAP, LABEL_H = 720, 26, 12, 18  # a label above its bar: never cut off
ROW = LABEL_H + BAR + GAP


def _chart(outcome: Outcome) -> str:
    """A stacked bar per tier: protected, at risk, unverified, scaled to the largest row."""
    rows = [*outcome.summary.tiers, outcome.summary.total]
    scale = max((r.registered_mrr for r in rows), default=1.0) or 1.0
    bars = "".join(_bar(row, i * ROW, scale) for i, row in enumerate(rows))
    legend = "".join(
        f'<span><i class="sw" style="background:{c}"></i>{n}</span>' for n, c in COLORS.items()
    )
    return (
        f'<svg role="img" aria-label="MRR by tier" width="{WIDTH}" '
        f'height="{len(rows) * ROW}" xmlns="http://www.w3.org/2000/svg">{bars}'
        f'</svg><div class="legend">{legend}</div>'
    )


def _bar(row: TierSummary, y: int, scale: float) -> str:
    parts = [f'<text x="0" y="{y + 13}" font-size="13">{escape(row.label)}</text>']
    x, y = 0.0, y + LABEL_H
    for name, value in (
        ("protected", row.protected),
        ("at risk", row.at_risk),
        ("unverified", row.unverified),
    ):
        w = (WIDTH - 90) * value / scale
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR}" '
            f'fill="{COLORS[name]}"><title>{name}: {money(value)}</title></rect>'
        )
        x += w
    parts.append(
        f'<text x="{x + 6:.1f}" y="{y + 18}" font-size="12">{money(row.registered_mrr)}</text>'
    )
    return "".join(parts)


TREND_W, TREND_H, PAD = 720, 180, 40


Point = tuple[str, float, float]  # a run: started at, protected MRR, registered MRR


def _trend(outcome: Outcome) -> str:
    """A line of protected MRR over the level's recent runs (from the history) and this
    one, against the MRR registered then (dashed); each point names its run and value."""
    run, total = outcome.run, outcome.summary.total
    points = [*outcome.trend, (run.started_at, total.protected, total.registered_mrr)]
    if len(points) < 2:
        return "<p>No earlier run of this level on record: the trend starts here.</p>"
    top = max(max(p[2], p[1]) for p in points) or 1.0
    xy = [_xy(i, len(points), p[1], top) for i, p in enumerate(points)]
    registered = " ".join(f"{x},{y}" for x, y in (_xy(i, len(points), p[2], top)
                                                  for i, p in enumerate(points)))  # fmt: skip
    return (
        f'<svg role="img" aria-label="protected MRR over {len(points)} runs" width="{TREND_W}" '
        f'height="{TREND_H}" xmlns="http://www.w3.org/2000/svg">{_axis(points, top)}'
        f'<polyline points="{registered}" fill="none" stroke="{COLORS["unverified"]}" '
        f'stroke-dasharray="4 3"/><polyline points="{" ".join(f"{x},{y}" for x, y in xy)}" '
        f'fill="none" stroke="{COLORS["protected"]}" stroke-width="2"/>{_dots(points, xy)}</svg>'
        '<div class="legend"><span>protected MRR</span><span>dashed: registered MRR</span></div>'
    )


def _xy(i: int, count: int, value: float, top: float) -> tuple[str, str]:
    x = PAD + i * (TREND_W - 2 * PAD) / (count - 1)
    return f"{x:.1f}", f"{TREND_H - PAD - (TREND_H - 2 * PAD) * value / top:.1f}"


def _dots(points: list[Point], xy: list[tuple[str, str]]) -> str:
    return "".join(
        f'<circle cx="{x}" cy="{y}" r="3" fill="{COLORS["protected"]}"><title>'
        f"{escape(p[0])}: {money(p[1])} of {money(p[2])}</title></circle>"
        for p, (x, y) in zip(points, xy, strict=True)
    )


def _axis(points: list[Point], top: float) -> str:
    return (
        f'<text x="0" y="{PAD - 8}" font-size="12">{money(top)}</text>'
        f'<text x="{PAD}" y="{TREND_H - 8}" font-size="12">{escape(points[0][0][:10])}</text>'
        f'<text x="{TREND_W - PAD}" y="{TREND_H - 8}" font-size="12" text-anchor="end">'
        "this run</text>"
    )


def _tiers(outcome: Outcome) -> str:
    head = "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in TIER_COLUMNS) + "</tr>"
    *tiers, total = tier_rows(outcome)
    rows = [_tier_row(cells) for cells in tiers]
    rows.append(_tier_row(cells=total).replace("<td>", "<td><b>", 1))
    return f"<table>{head}{''.join(rows)}</table>"


def _tier_row(cells: list[str]) -> str:
    return "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


def _cells(cells: list[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{escape(c)}</{tag}>" for c in cells) + "</tr>"


def _baseline(outcome: Outcome) -> list[str]:
    head = baseline_head(outcome)
    if head is None:
        return []
    rows = "".join(_cells(cells) for cells in baseline_rows(outcome))
    table = f"<table>{_cells(list(BASELINE_COLUMNS), 'th')}{rows}</table>" if rows else ""
    return ["<h2>Since the baseline</h2>", f"<p>{escape(head)}</p>", table]


ENTRY_COLUMNS = ["Entry", "Name", "Tier", "MRR", "Owner", "Status", "Duration", "Flaky"]
ENTRY_COLUMNS += ["Quarantined", "Since the baseline"]


def _entries(outcome: Outcome) -> str:
    """Every selected entry: what it is worth, whose it is, how it went."""
    changes = outcome.comparison.changes if outcome.comparison else {}
    entries = {e.id: e for e in outcome.registry.tests}
    rows = []
    for result in outcome.run.entries:
        e = entries[result.entry_id]
        flaky = sum(t.status is Status.FLAKY for t in result.tests)
        rows.append(_cells([
            e.id, e.name, str(e.tier), money(e.mrr), e.owner, str(result.status),
            f"{result.duration:.2f} s", str(flaky) if flaky else "",
            "yes" if result.status is Status.QUARANTINED else "",
            str(changes.get(e.id, "")),
        ]))  # fmt: skip
    return f"<table>{_cells(ENTRY_COLUMNS, 'th')}{''.join(rows)}</table>"


def _why(outcome: Outcome) -> list[str]:
    reasons = reasons_shown(outcome)
    if not reasons:
        return []
    items = "".join(f"<li>{escape(r.text)}</li>" for r in reasons)
    return ["<h2>Why it is not green</h2>", f"<ul>{items}</ul>"]


def _gate(outcome: Outcome) -> list[str]:
    gate = outcome.gate
    if gate is None:
        return []
    items = "".join(f"<li>{escape(f)}</li>" for f in gate.failures)
    state = "held" if gate.held else "not met"
    return [f"<h2>Gate {escape(gate.name)}: {state}</h2>", f"<ul>{items}</ul>" if items else ""]


def _failures(outcome: Outcome) -> list[str]:
    bad = attention(outcome)
    if not bad:
        return []
    owners = ", ".join(f"{escape(o)}: {money(m)}" for o, m in outcome.summary.at_risk_by_owner)
    return [
        "<h2>Failures</h2>",
        f"<p>MRR at risk by owner — {owners or 'none'}</p>",
        *(_failure(e, r) for e, r in bad),
    ]


SHOWN, TEXT = 10, 4_000  # failing tests in full per entry, characters per traceback


def _failure(e: Entry, result: EntryResult) -> str:
    """The entry's failing tests, the first SHOWN with their output (cut at TEXT
    characters): a report of 10,000 failures still opens; the JSON keeps everything."""
    bad = [t for t in result.tests if t.status in FAILING or t.status is Status.FLAKY]
    details = "".join(
        f"<details><summary>{escape(t.nodeid)} — {t.status}</summary>"
        f"<pre>{escape(_cut(t.longrepr or t.message))}</pre>"
        + (f"<pre>{escape(_cut(t.output))}</pre>" if t.output else "")
        + "</details>"
        for t in bad[:SHOWN]
    )
    rest = [t.nodeid for t in bad[SHOWN:]]
    if rest:
        details += f"<p>and {len(rest)} more failing: {escape(', '.join(rest))}</p>"
    return (
        f"<h3>{escape(e.name)} <small>({escape(e.id)}, tier {e.tier}, {money(e.mrr)}, "
        f"{escape(e.owner)})</small></h3><p>{escape(result.message or result.note)}</p>"
        f"{details}"
    )


def _cut(text: str) -> str:
    return text if len(text) <= TEXT else text[:TEXT] + f"\n[{len(text) - TEXT} more characters]"


def _durations(outcome: Outcome) -> str:
    tests = sorted((t for r in outcome.run.entries for t in r.tests), key=lambda t: -t.duration)
    rows = "".join(
        f"<tr><td>{escape(t.nodeid)}</td><td>{t.status}</td><td>{t.duration:.3f} s</td></tr>"
        for t in tests[:200]
    )
    return f"<table><tr><th>Test</th><th>Status</th><th>Duration</th></tr>{rows}</table>"
