"""Every report a command asked for, written from one outcome; none lost without a word."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from runner.files import check_distinct, write_text
from runner.reports.html import render_html
from runner.reports.json_report import to_dict
from runner.reports.junit import render_junit
from runner.reports.markdown import LIMIT, render_markdown
from runner.request import ReportPaths
from runner.verdict import Outcome

Renderer = Callable[[Outcome], str]


def render_json(outcome: Outcome) -> str:
    return json.dumps(to_dict(outcome), indent=2) + "\n"


RENDERERS: dict[str, Renderer] = {
    "json": render_json,
    "junit": render_junit,
    "markdown": render_markdown,
    "html": render_html,
}
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"


def check_reports(reports: ReportPaths) -> dict[str, Path]:
    """The report files asked for, by format; two aimed at one file are a usage error,
    raised before anything runs."""
    paths = reports.chosen()
    check_distinct((f"--{fmt}", path) for fmt, path in paths.items())
    return paths


def write_reports(outcome: Outcome, paths: dict[str, Path]) -> list[str]:
    """Write each report, and append the Markdown summary to $GITHUB_STEP_SUMMARY when set
    (once, if --markdown names that very file); returns the paths that could not be written."""
    summary = os.environ.get(STEP_SUMMARY)
    full = str(paths.get("html") or paths.get("json") or "")
    markdown = functools.partial(render_markdown, full=full)
    targets = [
        (p, markdown if fmt == "markdown" else RENDERERS[fmt], False) for fmt, p in paths.items()
    ]
    if summary:
        same = "markdown" in paths and _same(paths["markdown"], Path(summary))
        targets = [t for t in targets if not (same and t[1] is markdown)]
        room = LIMIT - _size(Path(summary))  # the limit holds for the whole step summary
        targets.append((Path(summary), functools.partial(markdown, limit=max(room, 0)), True))
    lost = []
    for path, render, append in targets:
        try:
            write_text(path, render(outcome), append=append)
        except OSError as exc:
            print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            lost.append(str(path))
    return lost


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)
