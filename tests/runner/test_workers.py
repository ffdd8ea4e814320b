"""`--workers`: pytest-xdist spreads the tests; results still come from every worker's
events, and a worker that dies is reported with what it held and what never ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Project, entry

pytestmark = pytest.mark.slow

SLOW_TESTS = """
import os
import time

import pytest

@pytest.mark.parametrize("i", range({count}))
def test_slow(i):
    time.sleep(0.3)
"""


def _tests(project: Project) -> dict[str, dict[str, str]]:
    report = project.report()
    return {t["nodeid"]: t for e in report["tests"] for t in e["tests"]}


def _workers(project: Project) -> dict[str, str]:
    return {n: t["worker"] for n, t in _tests(project).items() if "worker" in t}


def test_workers_run_every_test_and_report_all_of_them(project: Project) -> None:
    project.write("tests/test_a.py", SLOW_TESTS.format(count=6))
    project.write(
        "tests/test_b.py",
        "import os\n\ndef test_b():\n    assert os.environ['PYTEST_XDIST_WORKER']\n",
    )
    project.registry([entry("a", "tests/test_a.py"), entry("b", "tests/test_b.py", tier=2)])
    proc = project.run("--workers", "2", "--json", "run.json", "--no-history")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "collected 7 pytest tests" in proc.stdout
    statuses = {n: t["status"] for n, t in _tests(project).items()}
    assert len(statuses) == 7 and set(statuses.values()) == {"passed"}


def test_a_worker_that_dies_is_replaced_and_the_run_exits_5(project: Project) -> None:
    project.write("tests/test_crash.py", "import os\n\ndef test_crash():\n    os._exit(0)\n")
    project.write("tests/test_slow.py", SLOW_TESTS.format(count=12))
    project.registry(
        [
            entry("crash", "tests/test_crash.py", mrr=700),
            entry("slow", "tests/test_slow.py", mrr=300),
        ]
    )
    proc = project.run("--workers", "2", "--json", "run.json", "--no-history")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    tests = _tests(project)
    crashed = tests["tests/test_crash.py::test_crash"]
    assert crashed["status"] == "error" and "died while running this test" in crashed["message"]
    assert len(tests) == 13  # every selected test has a status
    others = {n: t["status"] for n, t in tests.items() if n != "tests/test_crash.py::test_crash"}
    assert set(others.values()) == {"passed"}  # a new worker ran the rest
    assert "worker" in project.report()["run"]["broken"][0]
    assert project.report()["total"]["protected_mrr"] == 300


def test_a_group_runs_in_one_worker(project: Project) -> None:
    for name in ("one", "two", "three"):
        project.write(f"tests/test_{name}.py", SLOW_TESTS.format(count=3))
    project.write("tests/test_fail.py", "def test_fail():\n    assert False\n")
    project.registry(
        [
            entry("one", "tests/test_one.py", group="db"),
            entry("two", "tests/test_two.py", group="db"),
            entry("three", "tests/test_three.py"),
            entry("fail", "tests/test_fail.py", mrr=10),
        ]
    )
    proc = project.run("--workers", "2", "--json", "run.json", "--no-history")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    workers = _workers(project)
    grouped = {w for n, w in workers.items() if "test_one" in n or "test_two" in n}
    assert len(grouped) == 1 and len(workers) == 10
    assert all("@" not in n for n in _tests(project))


def test_bad_worker_counts_are_usage_errors(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.registry([entry("a", "tests/test_a.py")])
    for bad in ("0", "-2", "many"):
        proc = project.run("--workers", bad)
        assert proc.returncode == 2 and "--workers" in proc.stderr, bad
    assert project.run("--workers", "1", "--no-history").returncode == 0


def test_a_level_may_default_to_workers_and_the_cli_overrides(project: Project) -> None:
    project.write(
        "tests/test_b.py",
        "import os\n\ndef test_b():\n    print(os.environ.get('PYTEST_XDIST_WORKER', 'none'))\n",
    )
    levels = {"unit": {"timeout": 60, "workers": 2}}
    project.registry([entry("b", "tests/test_b.py")], levels=levels)
    assert project.run("--json", "run.json", "--no-history").returncode == 0
    assert _tests(project)["tests/test_b.py::test_b"]["worker"].startswith("gw")
    assert project.run("--workers", "1", "--json", "run.json", "--no-history").returncode == 0
    assert "worker" not in _tests(project)["tests/test_b.py::test_b"]
    project.registry([entry("b", "tests/test_b.py")], levels={"unit": {"workers": "lots"}})
    proc = project.run("plan")
    assert proc.returncode == 2 and "'workers' must be" in proc.stderr


HANG = """
import os
import signal
import time

def test_hang_one():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(os.environ["PID_DIR"] + "/" + str(os.getpid()), "w"):
        pass
    time.sleep(600)

def test_hang_two():
    test_hang_one()
"""


def test_a_timeout_kills_every_worker_and_keeps_the_report(project: Project) -> None:
    """Both workers hang and ignore SIGTERM: the level timeout still ends the run, the
    tests they held are timed_out, and no worker process is left."""
    pids = project.root / "pids"
    pids.mkdir()
    project.env["PID_DIR"] = str(pids)
    project.write("tests/test_hang.py", HANG)
    project.registry([entry("hang", "tests/test_hang.py")])
    proc = project.run("--workers", "2", "--timeout", "4", "--json", "run.json", "--no-history")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    statuses = {n.split("::")[1]: t["status"] for n, t in _tests(project).items()}
    assert statuses == {"test_hang_one": "timed_out", "test_hang_two": "timed_out"}
    assert project.report()["run"]["timed_out"] is True
    workers = [int(p.name) for p in pids.iterdir()]
    assert len(workers) == 2 and not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    """Running or sleeping; a killed process waiting for init to reap it (Z) is not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
