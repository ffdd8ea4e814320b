"""The CLI end to end: real child pytest runs on generated projects."""

from __future__ import annotations

import pytest

from tests.conftest import Project, entry

MIXED = """
    import pytest

    def test_ok():
        pass

    def test_fail():
        assert 1 == 2, "checkout total is wrong"

    @pytest.mark.skip(reason="not today")
    def test_skip():
        pass
"""


@pytest.fixture
def mixed(project: Project) -> Project:
    project.write("tests/test_mixed.py", MIXED)
    project.write("tests/test_green.py", "def test_a():\n    pass\ndef test_b():\n    pass\n")
    project.write("tests/test_loose.py", "def test_nobody_registered_me():\n    pass\n")
    project.registry(
        [
            entry("checkout", "tests/test_mixed.py", tier=1, mrr=25_000, owner="payments"),
            entry("catalog", "tests/test_green.py", tier=2, mrr=12_000),
            entry("later", "tests/test_later.py", tier=3, mrr=3_000, status="pending"),
        ]
    )
    return project


def test_failed_run_reports_money_statuses_and_exit_1(mixed: Project) -> None:
    proc = mixed.run("--json", "run.json", "--junit", "run.xml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED  tests/test_mixed.py::test_fail" in proc.stdout
    assert (
        "checkout [failed] tier 1, $25,000 MRR (payments): AssertionError: checkout total"
        in proc.stdout
    )
    assert "$12,000 of $40,000 MRR protected" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "pytest tests: 3 passed, 1 failed, 1 skipped, 0 not run"
    report = mixed.report()
    statuses = {t["id"]: t["status"] for t in report["tests"]}
    assert statuses == {"checkout": "failed", "catalog": "passed", "later": "pending"}
    assert report["total"]["at_risk_mrr"] == 25_000
    assert report["total"]["unverified_mrr"] == 3_000
    assert report["exit_code"] == 1
    assert report["unregistered"] == ["tests/test_loose.py::test_nobody_registered_me"]


def test_green_selection_exits_0(mixed: Project) -> None:
    proc = mixed.run("--pattern", "catalog", "--json", "run.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED: $12,000 of $40,000 MRR protected (30.0%)" in proc.stdout
    tests = mixed.report()["tests"][0]["tests"]
    assert [t["nodeid"] for t in tests] == [
        "tests/test_green.py::test_a",
        "tests/test_green.py::test_b",
    ]


def test_list_prints_plan_without_running(mixed: Project) -> None:
    proc = mixed.run("--list")
    assert proc.returncode == 0
    assert "checkout" in proc.stdout
    assert "pending" in proc.stdout
    assert "2 of 3 selected entries would run (1 pending)" in proc.stdout
    assert "collected" not in proc.stdout


def test_plan_json(mixed: Project) -> None:
    proc = mixed.run("plan", "--json", "--tier", "1")
    assert proc.returncode == 0
    assert '"runnable_mrr": 25000' in proc.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--level", "nightly"], 2, "unknown level 'nightly'"),
        (["--pattern", "nothing*"], 3, "no registered test matches"),
        (["--id", "later"], 3, "all are pending"),
        (["--gate", "nope"], 2, "unknown gate 'nope'"),
        (["--registry", "missing.yaml"], 2, "registry file not found"),
        (["--tier", "x"], 2, "'x' is not a valid integer"),
    ],
)
def test_bad_input_is_one_line_and_a_documented_code(
    mixed: Project, args: list[str], code: int, message: str
) -> None:
    proc = mixed.run(*args)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_registry_from_environment_variable(mixed: Project) -> None:
    (mixed.root / "config/levels.yaml").rename(mixed.root / "other.yaml")
    mixed.env["UTR_REGISTRY"] = "other.yaml"
    assert mixed.run("--list").returncode == 0


def test_extra_pytest_args_after_double_dash(mixed: Project) -> None:
    """-k runs part of an entry: what it deselected was not verified, so neither is the entry."""
    proc = mixed.run("--id", "checkout", "--json", "run.json", "--", "-k", "ok")
    assert proc.returncode == 3, proc.stdout
    (checkout,) = mixed.report()["tests"]
    statuses = {t["nodeid"].split("::")[1]: t["status"] for t in checkout["tests"]}
    assert statuses == {"test_ok": "passed", "test_fail": "deselected", "test_skip": "deselected"}
    assert checkout["status"] == "partial"
    assert mixed.report()["total"]["protected_mrr"] == 0


def test_gate_not_met_exits_4(mixed: Project) -> None:
    proc = mixed.run("--pattern", "catalog", "--gate", "release", "--json", "run.json")
    assert proc.returncode == 4, proc.stdout
    assert "gate 'release': NOT met" in proc.stdout
    assert mixed.report()["gate"]["held"] is False


def test_strict_makes_unregistered_tests_an_error(mixed: Project) -> None:
    proc = mixed.run("--pattern", "catalog", "--strict")
    assert proc.returncode == 2
    assert "not registered (--strict), first: tests/test_loose.py" in proc.stderr


def test_entry_matching_no_collected_test_is_a_registry_error(project: Project) -> None:
    project.write("tests/test_empty.py", "def helper():\n    pass\n")
    project.registry([entry("empty", "tests/test_empty.py")])
    proc = project.run()
    assert proc.returncode == 2
    assert "levels.yaml:" in proc.stderr
    assert "entry 'empty': path 'tests/test_empty.py' matches no collected test" in proc.stderr


def test_node_id_entries_split_one_file(project: Project) -> None:
    project.write("tests/test_two.py", MIXED)
    project.registry(
        [
            entry("good", "tests/test_two.py::test_ok", mrr=10),
            entry("bad", "tests/test_two.py::test_fail", mrr=20),
        ]
    )
    proc = project.run("--json", "run.json")
    assert proc.returncode == 1
    statuses = {t["id"]: t["status"] for t in project.report()["tests"]}
    assert statuses == {"bad": "failed", "good": "passed"}
    assert project.report()["unregistered"] == ["tests/test_two.py::test_skip"]
