"""CI and release-manager features end to end through the CLI."""

from __future__ import annotations

import json
import sqlite3

import pytest
from junitparser import JUnitXml

from tests.conftest import Project, entry

PASSING = "def test_one():\n    pass\n\ndef test_two():\n    pass\n"
FAILING = "def test_bad():\n    assert 0, 'money path broken'\n"


@pytest.fixture
def shop(project: Project) -> Project:
    for name in ("checkout", "billing", "search", "reports"):
        project.write(f"tests/test_{name}.py", PASSING)
    project.registry(
        [
            entry("checkout", "tests/test_checkout.py", tier=1, mrr=40_000, owner="payments"),
            entry("billing", "tests/test_billing.py", tier=1, mrr=30_000, owner="payments"),
            entry("search", "tests/test_search.py", tier=2, mrr=20_000, owner="discovery"),
            entry("reports", "tests/test_reports.py", tier=3, mrr=10_000, owner="insights"),
        ]
    )
    return project


def test_markdown_html_and_step_summary(shop: Project) -> None:
    shop.write("tests/test_search.py", FAILING)
    shop.env["GITHUB_STEP_SUMMARY"] = str(shop.root / "summary.md")
    proc = shop.run("--markdown", "out/run.md", "--html", "out/run.html")
    assert proc.returncode == 1
    md = (shop.root / "out/run.md").read_text()
    assert "$80,000 of $100,000 MRR protected" in md
    assert "| `search` | failed | 2 | $20,000 | discovery | AssertionError: money path broken" in md
    assert (shop.root / "summary.md").read_text() == md
    html = (shop.root / "out/run.html").read_text()
    assert "<svg" in html and "money path broken" in html and "<script" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_report_re_renders_a_saved_run(shop: Project) -> None:
    shop.run("--json", "run.json", "--junit", "direct.xml")
    proc = shop.run("report", "run.json", "--format", "junit", "-o", "again.xml")
    assert proc.returncode == 0, proc.stderr
    assert (shop.root / "again.xml").read_text() == (shop.root / "direct.xml").read_text()
    text = shop.run("report", "run.json")
    assert "PASSED: $100,000 of $100,000 MRR protected" in text.stdout
    assert shop.run("report", "missing.json").returncode == 2


def test_shards_merge_and_a_missing_shard_is_unverified(shop: Project) -> None:
    codes = [shop.run("--shard", f"{k}/2", "--json", f"s{k}.json").returncode for k in (1, 2)]
    assert codes == [0, 0]
    ids = [{t["id"] for t in shop.report(f"s{k}.json")["tests"]} for k in (1, 2)]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    merged = shop.run("merge", "s1.json", "s2.json", "--gate", "release", "--json", "m.json")
    assert merged.returncode == 0, merged.stdout
    assert shop.report("m.json")["total"]["protected_mrr"] == 100_000
    walls = [shop.report(f"s{k}.json")["run"]["duration_s"] for k in (1, 2)]
    run = shop.report("m.json")["run"]
    assert (run["duration_s"], run["shard_durations_s"]) == (max(walls), walls)
    assert f"in {max(walls):.2f} s (the slowest of 2 shards; {sum(walls):.2f} s in all)" in (
        merged.stdout
    )
    partial = shop.run("merge", "s1.json", "--gate", "release", "--json", "p.json")
    assert partial.returncode == 5  # a missing shard is no pass
    report = shop.report("p.json")
    assert report["total"]["unverified_mrr"] == 100_000 - report["total"]["protected_mrr"] > 0
    assert "shard report(s) missing: [2] of 2" in report["run"]["broken"][0]
    allowed = shop.run(
        "merge", "s1.json", "--allow-missing-shards", "--gate", "release", "--json", "a.json"
    )
    assert allowed.returncode == 4  # unverified, and so the release gate is not met
    assert "shard report(s) missing: [2] of 2" in shop.report("a.json")["run"]["warnings"]


def test_budget_and_plan_json(shop: Project) -> None:
    shop.write(
        ".test_durations.json",
        json.dumps({"checkout": 5.0, "billing": 5.0, "search": 2.0, "reports": 1.0}),
    )
    plan = json.loads(shop.run("plan", "--json", "--budget", "8").stdout)
    assert [t["id"] for t in plan["tests"]] == ["checkout", "search", "reports"]
    assert plan["left_out"] == ["billing"] and plan["expected_s"] == 8.0
    proc = shop.run("--budget", "8", "--json", "run.json")
    assert "left out 1 entry, $30,000 MRR unverified" in proc.stdout
    statuses = {t["id"]: t["status"] for t in shop.report()["tests"]}
    assert statuses["billing"] == "not_run"


def test_fail_fast_and_stop_after_failing_tier(shop: Project) -> None:
    shop.write("tests/test_checkout.py", FAILING)
    proc = shop.run("--stop-after-failing-tier", "--json", "run.json")
    assert proc.returncode == 1
    notes = {t["id"]: (t["status"], t["note"]) for t in shop.report()["tests"]}
    assert notes["search"] == ("not_run", "not run: tier 1 failed (--stop-after-failing-tier)")
    assert notes["billing"][0] == "passed"
    assert shop.report()["total"]["unverified_mrr"] == 30_000
    ff = shop.run("--fail-fast", "--json", "ff.json")
    assert ff.returncode == 1
    assert [t["status"] for t in shop.report("ff.json")["tests"]].count("not_run") == 3


def test_validate_init_and_history(shop: Project) -> None:
    assert shop.run("validate").returncode == 0
    shop.write("tests/test_new.py", PASSING)
    assert shop.run("validate", "--strict").returncode == 2
    assert shop.run("init").returncode == 2  # never overwrites a registry by accident
    made = shop.run("init", "-o", "scaffold.yaml")
    assert made.returncode == 0, made.stderr
    assert shop.run("--registry", "scaffold.yaml", "validate").returncode == 0
    shop.run()
    shop.run()
    history = json.loads(shop.run("history", "--json").stdout)
    assert [r["protected"] for r in history["runs"]] == [100_000, 100_000]
    with sqlite3.connect(shop.root / ".runner/history.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 8


def test_detect_flakes_reports_mixed_outcomes(project: Project) -> None:
    marker = project.root / "count"
    project.write(
        "tests/test_coin.py",
        f"""
        from pathlib import Path

        def test_coin():
            p = Path({str(marker)!r})
            n = int(p.read_text()) if p.exists() else 0
            p.write_text(str(n + 1))
            assert n % 2 == 0
    """,
    )
    project.registry([entry("coin", "tests/test_coin.py", tier=3)])
    proc = project.run("--detect-flakes", "3")
    assert proc.returncode == 1
    assert "flaky: tests/test_coin.py::test_coin (failed 1, passed 2)" in proc.stdout


def test_junit_of_a_flaky_retry_parses(project: Project) -> None:
    project.write("tests/test_ok.py", PASSING)
    project.registry([entry("ok", "tests/test_ok.py")])
    project.run("--junit", "r.xml")
    assert sum(1 for _ in next(iter(JUnitXml.fromfile(str(project.root / "r.xml"))))) == 2
