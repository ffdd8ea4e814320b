"""The HTML report at size: 10,000 failing pytest tests stay a report a browser opens
(bounded size, well-formed), and every label is whole. Its render time is in bench/."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from runner.reports.html import render_html
from runner.results import EntryResult, RunResult, Status, TestResult
from runner.verdict import judge
from tests.runner.helpers import make_entry, make_registry

LONG_NAME = "Tier 1: Critical revenue protection for every payment path"


class _Balanced(HTMLParser):
    """Counts the elements that must be closed; a cut-off report leaves some open."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("table", "details", "svg", "pre", "ul"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("table", "details", "svg", "pre", "ul"):
            assert self.open.pop() == tag


def _big_run(entries: int = 100, tests: int = 100) -> RunResult:
    results = [
        EntryResult(
            entry_id=f"e{i}",
            status=Status.FAILED,
            tests=tuple(
                TestResult(
                    nodeid=f"tests/test_e{i}.py::test_{j}",
                    entry_id=f"e{i}",
                    status=Status.FAILED,
                    duration=0.01,
                    message="AssertionError",
                    longrepr="x" * 20_000,
                )
                for j in range(tests)
            ),
        )
        for i in range(entries)
    ]
    return RunResult(
        level="unit", started_at="2026-12-02T00:00:00", duration=1.0, entries=tuple(results)
    )


def test_ten_thousand_failures_make_a_bounded_well_formed_report() -> None:
    registry = make_registry(*(make_entry(f"e{i}", tier=1 + i % 3) for i in range(100)))
    html = render_html(judge(registry, _big_run()))
    assert len(html.encode()) < 6_000_000  # 10,000 tracebacks of 20 kB would be 200 MB
    assert html.count("<details>") == 100 * 10 and "and 90 more failing" in html
    parser = _Balanced()
    parser.feed(html)
    assert parser.open == []
    assert html.count("<tr><td>e") >= 100  # the entries table: every entry


def test_labels_are_never_cut() -> None:
    registry = make_registry(make_entry("a"))
    tiers = {**registry.tiers, 1: replace(registry.tiers[1], name=LONG_NAME)}
    registry = replace(registry, tiers=tiers)
    run = RunResult(
        level="unit",
        started_at="t",
        duration=1.0,
        entries=(EntryResult(entry_id="a", status=Status.PASSED),),
    )
    assert LONG_NAME in render_html(judge(registry, run))


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Debian's chromium is not installed: the report is not opened in a browser")
    return found


def test_a_real_browser_renders_the_report(tmp_path: Path) -> None:
    """Headless chromium loads the file with no network and no script, and its DOM has
    the verdict, the entries and both charts."""
    registry = make_registry(*(make_entry(f"e{i}", tier=1 + i % 3) for i in range(100)))
    page = tmp_path / "report.html"
    outcome = replace(judge(registry, _big_run()), trend=(("2026-12-01T00:00:00", 50.0, 100.0),))
    page.write_text(render_html(outcome), encoding="utf-8")
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "Revenue protection" in dom and dom.count("<svg") == 2
    assert dom.count("<tr><td>e") >= 100 and "and 90 more failing" in dom
