"""`mutate` through the real CLI on generated projects: cosmic-ray's mutants of what each
entry covers, each run through the runner against the entries that cover it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner.mutation.engine import Session, in_lazy_annotation
from tests.conftest import REPO, Project, entry

pytestmark = pytest.mark.slow

CALC = """\
def price(quantity, unit, discount=0):
    if quantity < 0:
        raise ValueError("negative quantity")
    total = quantity * unit
    if total > 100:
        total = total - discount
    return total
"""
CHECKS = """\
import pytest
from calc import price

def test_price():
    assert price(2, 3) == 6
    assert price(50, 3, discount=10) == 140
    assert price(10, 10, discount=5) == 100

def test_negative():
    with pytest.raises(ValueError):
        price(-1, 3)
"""
CALLS = "from calc import price\n\ndef test_price_runs():\n    price(2, 3)\n"


@pytest.fixture
def calc(project: Project) -> Project:
    project.write("calc.py", CALC)
    project.write("tests/test_checks.py", CHECKS)
    project.write("tests/test_calls.py", CALLS)
    project.registry(
        [
            entry("checks", "tests/test_checks.py", mrr=9000, covers=["calc.py"]),
            entry("calls", "tests/test_calls.py", mrr=1000, covers=["calc.py"]),
        ]
    )
    return project


def _entries(project: Project, name: str = "m.json") -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in project.report(name)["entries"]}


def test_an_entry_that_checks_results_scores_far_above_one_that_only_calls(calc: Project) -> None:
    proc = calc.run("mutate", "--json", "m.json", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    scores = _entries(calc)
    assert scores["checks"]["score"] >= 0.8
    assert scores["calls"]["score"] <= 0.3
    for entry_id in ("checks", "calls"):
        e = scores[entry_id]
        assert e["killed"] + e["survived"] == e["total"] == e["mutants"] > 20
        assert all(s["diff"].startswith("--- a/calc.py") for s in e["survivors"])
    report = calc.report("m.json")
    verified = 9000 * scores["checks"]["score"] + 1000 * scores["calls"]["score"]
    assert report["mrr_verified_by_mutation"] == pytest.approx(verified)
    assert (calc.root / "calc.py").read_text() == CALC  # every mutant was put back
    again = calc.run("mutate", timeout=120)
    assert "0 mutants to run" in again.stdout  # the session remembers


def test_an_interrupted_session_restores_the_file_and_resumes(calc: Project) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "unified_test_runner.py"), "mutate"],
        cwd=calc.root,
        env=calc.child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("[3/") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert (calc.root / "calc.py").read_text() == CALC
    resumed = calc.run("mutate", "--json", "m.json", timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    done_before = int(resumed.stdout.split("(")[1].split(" done before")[0])
    assert done_before >= 3
    assert _entries(calc)["checks"]["total"] == _entries(calc)["checks"]["mutants"]


def test_a_sample_says_its_confidence_interval_and_a_budget_stops_early(calc: Project) -> None:
    proc = calc.run("mutate", "--sample", "6", "--seed", "7", "--json", "m.json", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    checks = _entries(calc)["checks"]
    low, high = checks["interval_95"]
    assert checks["total"] == 6 and low <= checks["score"] <= high and high - low > 0.2
    assert calc.run("mutate", "--sample", "6", "--seed", "7", timeout=60).stdout.count("[") == 0
    budget = calc.run("mutate", "--time-budget", "1", timeout=300)
    assert "time budget spent" in budget.stdout


def test_fail_under_is_a_gate(calc: Project) -> None:
    proc = calc.run("mutate", "--id", "calls", "--sample", "4", "--fail-under", "90", timeout=300)
    assert proc.returncode == 4, proc.stdout[-2000:]
    assert "below 90%: calls" in proc.stdout


def test_a_hanging_mutant_is_a_kill(project: Project) -> None:
    project.write("loop.py", "def countdown(n):\n    while n > 0:\n        n -= 1\n    return n\n")
    project.write(
        "tests/test_loop.py",
        "from loop import countdown\n\ndef test_countdown():\n    assert countdown(3) == 0\n",
    )
    project.registry([entry("loop", "tests/test_loop.py", covers=["loop.py"])])
    proc = project.run("mutate", "--json", "m.json", timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:]
    (loop,) = project.report("m.json")["entries"]
    assert loop["timed_out"] >= 1  # `n -= 1` made `n += 1` never ends: the runner stops it
    assert loop["score"] >= 0.8  # what survives is equivalent (`n > 0` as `n != 0`, say)


def test_bad_setups_are_one_line(calc: Project) -> None:
    calc.registry([entry("checks", "tests/test_checks.py")])  # no covers
    proc = calc.run("mutate")
    assert proc.returncode == 2 and "covers" in proc.stderr
    calc.write("tests/test_checks.py", "def test_broken():\n    assert False\n")
    calc.registry([entry("checks", "tests/test_checks.py", covers=["calc.py"])])
    failing = calc.run("mutate", timeout=300)
    assert failing.returncode == 1 and "must pass before mutants" in failing.stderr
    assert len(failing.stderr.strip().splitlines()) == 1


def test_a_run_shows_the_mrr_verified_by_mutation(calc: Project) -> None:
    assert calc.run("mutate", "--sample", "3", "--json", "m.json", timeout=300).returncode == 0
    proc = calc.run("--mutation", "m.json", "--json", "run.json", "--markdown", "run.md")
    assert proc.returncode == 0, proc.stdout
    assert "MRR verified by mutation" in proc.stdout
    assert "MRR verified by mutation" in (calc.root / "run.md").read_text()
    assert set(json.loads((calc.root / "run.json").read_text())["run"]["mutation"]) == {
        "checks",
        "calls",
    }


LAZY = """from __future__ import annotations

def f(x: int | None, *, y: dict[str, int] | None = None) -> int | None:
    z: list[int] | None = None
    return x if x is None else x | 1
"""


def test_annotations_a_module_never_evaluates_are_not_mutants(tmp_path: Path) -> None:
    """`int | None` -> `int ^ None` in a postponed annotation changes nothing a test can
    see; `x | 1` in the body is a real mutant. Without the __future__ import annotations
    are evaluated (a broken one fails at import), so they stay."""
    lazy = tmp_path / "lazy.py"
    lazy.write_text(LAZY)
    bars = [(n, col) for n, text in enumerate(LAZY.splitlines(), 1)
            for col, char in enumerate(text) if char == "|"]  # fmt: skip
    assert [in_lazy_annotation(lazy, p) for p in bars] == [True, True, True, True, False]
    eager = tmp_path / "eager.py"
    eager.write_text(LAZY.split("\n", 1)[1])
    assert not in_lazy_annotation(eager, (2, 9))


def test_a_line_marked_no_mutate_is_counted_never_run(calc: Project, tmp_path: Path) -> None:
    """cosmic-ray's `# pragma: no mutate` marks an equivalent mutant: a person judged that no
    test can tell it apart. Its mutants are counted as marked and left out of the score."""
    marked = CALC.replace("total > 100:", "total > 100:  # pragma: no mutate  (a reason)")
    calc.write("calc.py", marked)
    session = Session(tmp_path / "session", calc.root, ["calc.py"])
    mutants = session.mutants()
    session.close()
    assert {m.line for m in mutants if m.marked} == {5}
    assert any(not m.marked for m in mutants if m.line == 4)
    proc = calc.run("mutate", "--id", "checks", "--sample", "2", "--json", "m.json", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    checks = _entries(calc)["checks"]
    assert checks["marked_equivalent"] == sum(m.marked for m in mutants) > 0
    assert checks["mutants"] == sum(not m.marked for m in mutants)
    assert "calc.py:5 " not in proc.stdout
