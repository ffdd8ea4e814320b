"""Which collected tests an entry gets, as pytest would run them: catch-all directories,
files pytest collects only when named, parametrized node ids."""

from __future__ import annotations

import pytest

from tests.conftest import Project, entry

pytestmark = pytest.mark.slow

GREEN = "def test_a():\n    pass\n"


def test_a_catch_all_whose_tests_all_belong_elsewhere_is_valid(project: Project) -> None:
    project.write("tests/test_a.py", GREEN)
    project.write("tests/test_b.py", GREEN)
    project.registry(
        [
            entry("all", "tests", mrr=100),
            entry("a", "tests/test_a.py", mrr=10),
            entry("b", "tests/test_b.py", mrr=20),
        ]
    )
    proc = project.run("--json", "run.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    statuses = {t["id"]: t["status"] for t in project.report()["tests"]}
    assert statuses == {"all": "passed", "a": "passed", "b": "passed"}
    assert project.report()["total"]["protected_mrr"] == 130
    project.write("tests/test_b.py", "def test_a():\n    assert False\n")
    failed = project.run("--json", "run.json")
    assert failed.returncode == 1
    assert {t["id"]: t["status"] for t in project.report()["tests"]}["all"] == "failed"


def test_a_registered_file_outside_python_files_runs(project: Project) -> None:
    project.write("tests/test_a.py", GREEN)
    project.write("tests/checks/verify_billing.py", "def test_billing():\n    pass\n")
    project.registry(
        [entry("a", "tests/test_a.py"), entry("billing", "tests/checks/verify_billing.py")]
    )
    proc = project.run("--json", "run.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = {t["id"]: [x["nodeid"] for x in t["tests"]] for t in project.report()["tests"]}
    assert tests["billing"] == ["tests/checks/verify_billing.py::test_billing"]
    assert project.run("validate").returncode == 0


def test_a_pattern_matches_a_parametrized_node_id_literally(project: Project) -> None:
    project.write(
        "tests/test_p.py",
        "import pytest\n\n@pytest.mark.parametrize('n', [1, 2])\ndef test_p(n):\n    pass\n",
    )
    project.registry(
        [
            entry("one", "tests/test_p.py::test_p[1]", mrr=1),
            entry("two", "tests/test_p.py::test_p[2]", mrr=2),
        ]
    )
    proc = project.run("--pattern", "tests/test_p.py::test_p[1]", "--json", "run.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (only,) = project.report()["tests"]
    assert (only["id"], [t["nodeid"] for t in only["tests"]]) == (
        "one",
        ["tests/test_p.py::test_p[1]"],
    )


def test_a_narrowed_run_collects_only_its_entries_files(project: Project) -> None:
    """One entry does not pay for collecting every suite; a whole level (and --strict) still
    collects the suite roots, where unregistered tests are found."""
    marker = project.root / "b-was-imported"
    project.write("tests/test_a.py", GREEN)
    project.write("tests/test_b.py", f"open({str(marker)!r}, 'w').close()\n" + GREEN)
    project.write("tests/test_loose.py", GREEN)
    project.registry([entry("a", "tests/test_a.py"), entry("b", "tests/test_b.py")])
    narrow = project.run("--id", "a", "--json", "run.json")
    assert narrow.returncode == 0, narrow.stdout + narrow.stderr
    assert not marker.exists() and project.report()["unregistered"] == []
    strict = project.run("--id", "a", "--strict")
    assert strict.returncode == 2 and "first: tests/test_loose.py" in strict.stderr
    whole = project.run("--json", "run.json")
    assert whole.returncode == 0 and marker.exists()
    assert project.report()["unregistered"] == ["tests/test_loose.py::test_a"]
