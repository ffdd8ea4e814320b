"""A run against a baseline: from the history by default, or a report named with
--baseline; per entry a new failure, fixed, still failing, new or removed; the protected
MRR's delta in the console, the JSON, the Markdown summary and the HTML report."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
from typing import Any

import pytest

from runner.baseline import Change, change_of
from tests.conftest import Project, entry

GREEN = "def test_ok():\n    pass\n"
RED = "def test_bad():\n    assert False\n"


def _registry(project: Project, bodies: dict[str, str], mrr: int = 1_000) -> None:
    for name, body in bodies.items():
        project.write(f"tests/test_{name}.py", body)
    project.registry(
        [entry(n, f"tests/test_{n}.py", tier=2, mrr=mrr * (i + 1)) for i, n in enumerate(bodies)]
    )


def _changes(report: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {c["id"]: (c["change"], c["before"]) for c in report["baseline"]["changes"]}


@pytest.mark.parametrize(
    ("before", "now", "change"),
    [
        ("passed", "failed", Change.NEW_FAILURE),
        ("skipped", "timed_out", Change.NEW_FAILURE),
        ("error", "failed", Change.STILL_FAILING),
        ("failed", "flaky", Change.FIXED),
        ("failed", "skipped", None),  # not fixed: it verified nothing
        ("passed", "passed", None),
        (None, "passed", Change.NEW_ENTRY),
        ("passed", None, Change.REMOVED_ENTRY),
    ],
)
def test_how_an_entry_moved(before: str | None, now: str | None, change: Change | None) -> None:
    assert change_of(before, now) == change


@pytest.mark.slow
def test_the_last_run_on_record_is_the_default_baseline(project: Project) -> None:
    _registry(project, {"a": GREEN, "b": RED, "c": RED, "gone": GREEN})
    first = project.run("--json", "first.json")
    assert first.returncode == 1, first.stdout + first.stderr
    assert project.report("first.json")["baseline"] is None  # nothing on record yet
    _registry(project, {"a": RED, "b": GREEN, "c": RED, "new": GREEN})
    second = project.run("--json", "run.json", "--markdown", "run.md", "--html", "run.html")
    report = project.report()
    assert _changes(report) == {
        "a": ("new failure", "passed"),
        "b": ("fixed", "failed"),
        "c": ("still failing", "failed"),
        "new": ("new entry", None),
        "gone": ("removed entry", "passed"),
    }
    # protected then: a ($1,000) + gone ($4,000); now: b ($2,000) + new ($4,000)
    assert report["baseline"]["protected_mrr_before"] == 5_000
    assert report["baseline"]["protected_mrr_delta"] == 1_000
    assert "protected MRR +$1,000 ($5,000 then, $6,000 now)" in second.stdout
    assert "new failure: a (tier 2, $1,000 MRR), passed -> failed" in second.stdout
    _check_documents(project)


def _check_documents(project: Project) -> None:
    markdown = (project.root / "run.md").read_text()
    assert "### Since the baseline" in markdown and "| gone | - | - | removed entry |" in markdown
    html = (project.root / "run.html").read_text()
    assert "<h2>Since the baseline</h2>" in html and "<td>new failure</td>" in html
    assert 'aria-label="protected MRR over 2 runs"' in html  # the trend: history and this run
    assert "$5,000 of $10,000</title>" in html  # the first run: a + gone, of all four


@pytest.mark.slow
def test_a_named_report_is_the_baseline_and_no_baseline_turns_it_off(project: Project) -> None:
    _registry(project, {"a": GREEN})
    assert project.run("--json", "then.json", "--no-history").returncode == 0
    _registry(project, {"a": RED})
    named = project.run("--json", "run.json", "--baseline", "then.json", "--no-history")
    assert _changes(project.report()) == {"a": ("new failure", "passed")}
    assert "Against then.json" in named.stdout
    assert project.run("--json", "run.json").returncode == 1  # now on record: a red run
    off = project.run("--json", "run.json", "--no-baseline")
    assert off.returncode == 1 and project.report()["baseline"] is None
    both = project.run("--baseline", "then.json", "--no-baseline")
    assert both.returncode == 2 and "contradict" in both.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not a JSON report"),
        ('{"schema": "elsewhere"}', "not a unified-test-runner run report"),
    ],
)
def test_a_baseline_that_is_not_a_run_report_is_one_line(
    project: Project, content: str, message: str
) -> None:
    _registry(project, {"a": GREEN})
    (project.root / "then.json").write_text(content)
    proc = project.run("--baseline", "then.json")
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (project.root / ".runner" / "logs").exists()  # refused before anything ran


@pytest.mark.slow
def test_a_baseline_report_missing_its_entries_is_refused(project: Project) -> None:
    _registry(project, {"a": GREEN})
    assert project.run("--json", "then.json", "--no-history").returncode == 0
    data = json.loads((project.root / "then.json").read_text())
    del data["tests"]
    (project.root / "then.json").write_text(json.dumps(data))
    proc = project.run("--baseline", "then.json")
    assert proc.returncode == 2 and "without what a baseline needs" in proc.stderr, proc.stderr


FLIPS = "import os\n\ndef test_flips():\n    assert os.environ.get('FLIP') != '1'\n"
OLD_HISTORY = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT, level TEXT,
    exit_code INTEGER, duration_s REAL, registered REAL, protected REAL, at_risk REAL,
    unverified REAL);
CREATE TABLE results (run_id INTEGER REFERENCES runs(id), entry_id TEXT, status TEXT,
    duration_s REAL, attempts INTEGER);
INSERT INTO runs VALUES (1, '2026-11-01T00:00:00', 'unit', 0, 1.0, 1000, 1000, 0, 0);
INSERT INTO results VALUES (1, 'steady', 'passed', 0.1, 1);
"""


@pytest.mark.slow
def test_history_proposes_what_flipped_on_one_commit(project: Project) -> None:
    """An older history file gains the new columns; an entry that passed and failed on
    the same commit is a quarantine candidate, one that only changed with the code is not."""
    _registry(project, {"steady": GREEN, "flips": FLIPS})
    history = project.root / ".runner" / "history.sqlite"
    history.parent.mkdir()
    with contextlib.closing(sqlite3.connect(history)) as db:
        db.executescript(OLD_HISTORY)
    assert json.loads(project.run("history", "--json").stdout)["quarantine_candidates"] == []
    project.write(".gitignore", ".runner/\n.test_durations.json\n")  # as a project has it
    for args in (("init", "-q"), ("add", "."), ("commit", "-qm", "one")):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e.x", *args],
                       cwd=project.root, check=True, capture_output=True)  # fmt: skip
    for flip in ("0", "1"):
        project.env["FLIP"] = flip
        project.run("--no-baseline")
    data = json.loads(project.run("history", "--json").stdout)
    [candidate] = data["quarantine_candidates"]
    assert (candidate["id"], candidate["outcomes"], candidate["runs"]) == (
        "flips", ["failed", "passed"], 2,
    )  # fmt: skip
    assert [r["commit_sha"] is not None for r in data["runs"]] == [False, True, True]
    assert (
        "quarantine candidate: flips (failed and passed on commit" in project.run("history").stdout
    )


@pytest.mark.slow
def test_a_run_of_part_of_the_level_is_never_the_baseline(project: Project) -> None:
    _registry(project, {"a": GREEN, "b": GREEN})
    assert project.run().returncode == 0
    assert project.run("--id", "a").returncode == 0  # a part: not what the next run compares
    _registry(project, {"a": GREEN, "b": RED})
    project.run("--json", "run.json")
    assert _changes(project.report()) == {"b": ("new failure", "passed")}
    assert project.report()["baseline"]["protected_mrr_delta"] == -2_000


@pytest.mark.slow
def test_a_baseline_with_an_amount_that_is_no_money_is_refused(project: Project) -> None:
    _registry(project, {"a": GREEN})
    assert project.run("--json", "then.json", "--no-history").returncode == 0
    text = (project.root / "then.json").read_text()
    data = json.loads(text)
    data["total"]["protected_mrr"] = 1e308
    (project.root / "then.json").write_text(json.dumps(data).replace("1e+308", "1e999"))
    proc = project.run("--baseline", "then.json")
    assert proc.returncode == 2 and "not an amount of money" in proc.stderr, proc.stderr
