"""More faults in the child: every one ends with the documented exit code and a full report."""

from __future__ import annotations

import pytest

from tests.conftest import Project, entry

pytestmark = pytest.mark.slow


def _statuses(project: Project) -> dict[str, str]:
    return {t["id"]: t["status"] for t in project.report()["tests"]}


def test_a_conftest_that_raises_breaks_the_run(project: Project) -> None:
    project.write("tests/conftest.py", "raise RuntimeError('conftest is broken')\n")
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.registry([entry("a", "tests/test_a.py", mrr=900)])
    proc = project.run("--json", "run.json")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert _statuses(project) == {"a": "not_run"}
    assert project.report()["total"]["unverified_mrr"] == 900


def test_a_plugin_error_breaks_the_run(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.registry([entry("a", "tests/test_a.py")])
    proc = project.run("--json", "run.json", "--", "-p", "no_such_plugin_anywhere")
    assert proc.returncode == 5
    assert project.report()["run"]["broken"]


def test_a_child_killed_with_sigkill(project: Project) -> None:
    project.write(
        "tests/test_kill.py",
        """
        import os
        import signal

        def test_first():
            pass

        def test_killed():
            os.kill(os.getpid(), signal.SIGKILL)

        def test_never():
            pass
    """,
    )
    project.registry([entry("kill", "tests/test_kill.py")])
    proc = project.run("--json", "run.json")
    assert proc.returncode == 5
    assert "killed by signal 9" in project.report()["run"]["broken"][0]
    tests = {t["nodeid"].split("::")[1]: t["status"] for t in project.report()["tests"][0]["tests"]}
    assert tests == {"test_first": "passed", "test_killed": "error", "test_never": "passed"}


def test_a_test_printing_100_mb_is_reported_with_bounded_output(project: Project) -> None:
    project.write(
        "tests/test_loud.py",
        """
        import sys

        def test_loud():
            chunk = "x" * (1 << 20)
            for _ in range(100):
                sys.stdout.write(chunk)
            assert False, "loud and failing"
    """,
    )
    project.registry([entry("loud", "tests/test_loud.py")])
    proc = project.run("--json", "run.json", timeout=300)
    assert proc.returncode == 1
    (test,) = project.report()["tests"][0]["tests"]
    assert test["status"] == "failed" and "loud and failing" in test["message"]
    assert len(test["output"]) < 10_000  # clipped: the report never carries 100 MB
    assert len(proc.stdout) < 100_000
