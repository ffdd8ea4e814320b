"""Quarantine end to end: muted entries run and cannot fail the run, skipped ones do not
run, neither protects its MRR; expiry, tier 1 and the gates' bounds."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from tests.conftest import Project, entry

pytestmark = pytest.mark.slow

FUTURE = (date.today() + timedelta(days=30)).isoformat()
PAST = (date.today() - timedelta(days=1)).isoformat()
GREEN = "def test_ok():\n    pass\n"
RED = "def test_bad():\n    assert False, 'known bad'\n"
MIXED = "def test_ok():\n    pass\n\ndef test_bad():\n    assert False, 'known bad'\n"
HANGS = "import time\n\ndef test_hangs():\n    time.sleep(300)\n"
GATES = {
    "pr": {"require_tiers": [1]},
    "release": {"require_all": True, "max_quarantined_mrr": 1000},
    "hotfix": {"require_tiers": [1], "quarantine_tiers": [1, 2, 3]},
}


def _quarantine(mode: str = "muted", until: str = FUTURE, **extra: Any) -> dict[str, Any]:
    return {
        "mode": mode,
        "owner": "payments",
        "reason": "fails on the new card network",
        "ticket": "PAY-42",
        "until": until,
        **extra,
    }


@pytest.fixture
def carried(project: Project) -> Project:
    for name, body in {"main": GREEN, "flaky": RED, "slow": HANGS, "cart": MIXED}.items():
        project.write(f"tests/test_{name}.py", body)
    project.registry(
        [
            entry("main", "tests/test_main.py", tier=1, mrr=10_000),
            entry("flaky", "tests/test_flaky.py", tier=2, mrr=3_000, quarantine=_quarantine()),
            entry("slow", "tests/test_slow.py", tier=3, mrr=500, quarantine=_quarantine("skipped")),
            entry(
                "cart",
                "tests/test_cart.py",
                tier=2,
                mrr=2_000,
                quarantine=_quarantine(tests=["tests/test_cart.py::test_bad"]),
            ),
        ],
        gates=GATES,
    )
    return project


def _entries(project: Project) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in project.report()["tests"]}


def test_quarantined_entries_cannot_fail_the_run_nor_protect(carried: Project) -> None:
    proc = carried.run("--json", "run.json", "--junit", "junit.xml", "--timeout", "60")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    junit = (carried.root / "junit.xml").read_text()
    assert "<failure" not in junit and 'message="quarantined (failed): AssertionError' in junit
    found = _entries(carried)
    assert {i: (e["status"], e.get("outcome")) for i, e in found.items()} == {
        "main": ("passed", None),
        "flaky": ("quarantined", "failed"),
        "slow": ("quarantined", "not_run"),
        "cart": ("quarantined", "passed"),
    }
    assert found["slow"]["tests"] == []  # skipped: it never ran
    assert found["flaky"]["quarantine"]["ticket"] == "PAY-42"
    total = carried.report()["total"]
    assert (total["protected_mrr"], total["at_risk_mrr"], total["quarantined_mrr"]) == (
        10_000,
        0,
        5_500,
    )
    assert "q flaky [quarantined, failed] tier 2, $3,000 MRR: muted until" in proc.stdout
    assert "$5,500 unverified ($5,500 of it quarantined)" in proc.stdout


def test_a_failure_outside_the_quarantined_tests_still_fails(carried: Project) -> None:
    carried.write("tests/test_cart.py", "def test_ok():\n    assert False\n\n" + RED)
    proc = carried.run("--id", "cart", "--json", "run.json")
    assert proc.returncode == 1, proc.stdout
    assert _entries(carried)["cart"]["status"] == "failed"


def test_an_expired_quarantine_counts_again(carried: Project) -> None:
    carried.registry(
        [entry("flaky", "tests/test_flaky.py", tier=2, quarantine=_quarantine(until=PAST))],
        gates=GATES,
    )
    proc = carried.run("--json", "run.json")
    assert proc.returncode == 1
    assert f"the quarantine of flaky (PAY-42) ended on {PAST}: it counts again" in proc.stdout


def test_tier_1_is_quarantined_only_where_a_gate_says_so(carried: Project) -> None:
    carried.registry(
        [entry("core", "tests/test_flaky.py", tier=1, quarantine=_quarantine())], gates=GATES
    )
    plain = carried.run("--json", "run.json")
    assert plain.returncode == 1
    assert "tier-1 entry core is not honoured: a run without a gate quarantines tiers 2, 3" in (
        plain.stdout
    )
    allowed = carried.run("--gate", "hotfix", "--json", "run.json")
    assert allowed.returncode == 0, allowed.stdout
    assert _entries(carried)["core"]["status"] == "quarantined"


def test_a_gate_bounds_the_quarantined_mrr(carried: Project) -> None:
    proc = carried.run("--gate", "release", "--json", "run.json", "--timeout", "60")
    assert proc.returncode == 4, proc.stdout
    failures = carried.report()["gate"]["failures"]
    assert failures == [
        "quarantined MRR is $5,500, above $1,000 (max_quarantined_mrr; 3 entries carried)"
    ]


@pytest.mark.parametrize(
    ("quarantine", "message"),
    [
        ({"mode": "muted"}, "missing required key 'owner'"),
        ({**_quarantine(), "mode": "ignored"}, "mode must be 'muted' or 'skipped'"),
        ({**_quarantine(), "until": "next week"}, "'until' must be a date (YYYY-MM-DD)"),
        ({**_quarantine(), "tests": ["tests/test_other.py::test_x"]}, "is not under"),
    ],
)
def test_a_bad_quarantine_is_one_line(project: Project, quarantine: Any, message: str) -> None:
    project.write("tests/test_flaky.py", RED)
    project.registry([entry("flaky", "tests/test_flaky.py", tier=2, quarantine=quarantine)])
    proc = project.run("--list")
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_merge_judges_quarantines_by_its_own_gate(carried: Project) -> None:
    """Shards run without a gate honour tiers 2 and 3; a merge whose gate honours none
    judges the carried entries on what they were."""
    gates = {**GATES, "strict": {"require_all": True, "quarantine_tiers": []}}
    carried.registry(
        [entry("flaky", "tests/test_flaky.py", tier=2, quarantine=_quarantine())], gates=gates
    )
    assert carried.run("--shard", "1/1", "--json", "s1.json").returncode == 0
    merged = carried.run("merge", "s1.json", "--gate", "strict", "--json", "run.json")
    assert merged.returncode == 1, merged.stdout
    assert _entries(carried)["flaky"]["status"] == "failed"
    assert carried.run("merge", "s1.json", "--json", "run.json").returncode == 0


def test_a_test_deselected_beside_a_skipped_quarantine_is_not_green(carried: Project) -> None:
    """pytest's --deselect is a prefix: quarantining test_x drops test_x_more too. The entry
    is then not verified (3), never carried green."""
    carried.write(
        "tests/test_cart.py", "def test_x():\n    pass\n\ndef test_x_more():\n    assert False\n"
    )
    skip = _quarantine("skipped", tests=["tests/test_cart.py::test_x"])
    carried.registry([entry("cart", "tests/test_cart.py", tier=2, quarantine=skip)])
    proc = carried.run("--json", "run.json")
    assert proc.returncode == 3, proc.stdout
    assert _entries(carried)["cart"]["status"] == "not_run"  # its one other test: deselected


def test_a_muted_failure_does_not_stop_the_tiers_after_it(carried: Project) -> None:
    carried.registry(
        [
            entry("flaky", "tests/test_flaky.py", tier=2, quarantine=_quarantine()),
            entry("main", "tests/test_main.py", tier=3),
        ]
    )
    proc = carried.run("--stop-after-failing-tier", "--json", "run.json")
    assert proc.returncode == 0, proc.stdout
    assert _entries(carried)["main"]["status"] == "passed"
