"""Faults in the child: crashes, hangs, Ctrl-C and collection errors never lose a result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.supervisor.process import ChildSpec, pytest_argv
from tests.conftest import REPO, Project, entry

pytestmark = pytest.mark.slow


CRASH = """
        import os

        def test_first():
            pass

        def test_dies():
            os._exit(0)

        def test_never():
            pass
    """

HANG = """
        import signal
        import time

        def test_quick():
            pass

        def test_hang():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(600)

        def test_after():
            pass
    """

SLOW = """
        import time

        def test_one():
            pass

        def test_slow():
            time.sleep(60)
    """


def _statuses(project: Project) -> dict[str, str]:
    return {t["nodeid"]: t["status"] for e in project.report()["tests"] for t in e["tests"]}


def test_a_crash_is_an_error_and_the_rest_runs_in_a_fresh_process(project: Project) -> None:
    project.write("tests/test_crash.py", CRASH)
    project.registry([entry("crash", "tests/test_crash.py", mrr=7000)])
    proc = project.run("--json", "run.json", "--junit", "run.xml")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert _statuses(project) == {
        "tests/test_crash.py::test_first": "passed",
        "tests/test_crash.py::test_dies": "error",
        "tests/test_crash.py::test_never": "passed",
    }
    report = project.report()
    assert report["run"]["broken"] == [
        "the pytest process exited (exit code 0) while running tests/test_crash.py::test_dies"
    ]
    assert [c["purpose"] for c in report["run"]["children"]] == ["run", "resume"]
    assert report["total"]["at_risk_mrr"] == 7000
    assert "RUN BROKEN" in proc.stdout


def test_segfault_is_a_broken_run(project: Project) -> None:
    project.write(
        "tests/test_segv.py",
        """
        import ctypes

        def test_segv():
            ctypes.string_at(0)
    """,
    )
    project.registry([entry("segv", "tests/test_segv.py")])
    proc = project.run("--json", "run.json")
    assert proc.returncode == 5
    assert "killed by signal" in project.report()["run"]["broken"][0]


def test_timeout_kills_a_hang_that_ignores_sigterm(project: Project) -> None:
    project.write("tests/test_hang.py", HANG)
    project.registry([entry("hang", "tests/test_hang.py")])
    started = time.monotonic()
    proc = project.run("--timeout", "4", "--json", "run.json")
    assert time.monotonic() - started < 60
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert _statuses(project) == {
        "tests/test_hang.py::test_quick": "passed",
        "tests/test_hang.py::test_hang": "timed_out",
        "tests/test_hang.py::test_after": "not_run",
    }
    assert project.report()["run"]["timed_out"] is True


def test_ctrl_c_exits_130_with_a_partial_report(project: Project) -> None:
    project.write("tests/test_slow.py", SLOW)
    project.registry([entry("slow", "tests/test_slow.py")])
    proc = _start(project, "--json", "run.json")
    _wait_for_running(proc, project.root)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert _statuses(project) == {
        "tests/test_slow.py::test_one": "passed",
        "tests/test_slow.py::test_slow": "not_run",
    }
    assert project.report()["run"]["interrupted"] is True


def _start(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "unified_test_runner.py"), *args],
        cwd=project.root,
        env=project.child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_running(proc: subprocess.Popen[str], root: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None
        found = list((root / ".runner" / "logs").glob("*/events-1.jsonl"))
        if any(
            "test_slow.py::test_slow" in p.read_text()
            and str(root) in (p.parent / "selection-1.json").read_text()
            for p in found
        ):
            return
        time.sleep(0.1)
    raise AssertionError("the slow test never started")


def test_forked_grandchild_is_not_left_behind(project: Project) -> None:
    pid_file = project.root / "grandchild.pid"
    project.write(
        "tests/test_fork.py",
        f"""
        import subprocess
        import sys

        def test_spawns():
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
            open({str(pid_file)!r}, "w").write(str(child.pid))
    """,
    )
    project.registry([entry("fork", "tests/test_fork.py")])
    assert project.run().returncode == 0
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_import_error_in_selected_file_is_a_broken_run(project: Project) -> None:
    project.write("tests/test_broken.py", "import no_such_module_anywhere\n")
    project.write("tests/test_fine.py", "def test_fine():\n    pass\n")
    project.registry(
        [entry("broken", "tests/test_broken.py", mrr=5), entry("fine", "tests/test_fine.py", mrr=7)]
    )
    proc = project.run("--json", "run.json")
    assert proc.returncode == 5
    statuses = {t["id"]: t["status"] for t in project.report()["tests"]}
    assert statuses == {"broken": "error", "fine": "passed"}
    assert (
        "no_such_module_anywhere"
        in project.report()["tests"][1]["note"] + project.report()["tests"][0]["note"]
    )


def test_collection_error_outside_the_selection_is_only_a_warning(project: Project) -> None:
    project.write("tests/test_broken.py", "import no_such_module_anywhere\n")
    project.write("tests/test_fine.py", "def test_fine():\n    pass\n")
    project.registry([entry("fine", "tests/test_fine.py")])
    proc = project.run()
    assert proc.returncode == 0, proc.stdout
    assert "collection error outside the selection: tests/test_broken.py" in proc.stdout


def _write_flaky(project: Project) -> None:
    """A test that fails on its first run in this project and passes afterwards."""
    marker = project.root / "seen"
    project.write(
        "tests/test_flaky.py",
        f"""
        from pathlib import Path

        def test_flaky():
            marker = Path({str(marker)!r})
            if not marker.exists():
                marker.write_text("1")
                raise AssertionError("first attempt fails")
    """,
    )


def test_flaky_test_is_retried_per_tier_policy(project: Project) -> None:
    _write_flaky(project)
    project.registry([entry("flaky", "tests/test_flaky.py", tier=2)])
    proc = project.run("--json", "run.json", "--junit", "run.xml")
    assert proc.returncode == 0, proc.stdout
    (test,) = project.report()["tests"][0]["tests"]
    assert test["status"] == "flaky"
    assert [a["status"] for a in test["attempts"]] == ["failed", "passed"]
    assert "<flakyFailure" in (project.root / "run.xml").read_text()


def test_a_retry_among_several_entries_is_not_a_registry_error(project: Project) -> None:
    _write_flaky(project)
    project.write("tests/test_steady.py", "def test_steady():\n    pass\n")
    project.registry(
        [
            entry("flaky", "tests/test_flaky.py", tier=3),
            entry("steady", "tests/test_steady.py", tier=3),
        ]
    )
    proc = project.run("--json", "run.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {t["id"]: t["status"] for t in project.report()["tests"]} == {
        "flaky": "flaky",
        "steady": "passed",
    }


def test_targets_follow_a_double_dash_so_none_is_an_option(tmp_path: Path) -> None:
    spec = ChildSpec(
        root=tmp_path,
        targets=("-p evil",),
        extra_args=("-q",),
        spec_file=tmp_path / "s.json",
        events_file=tmp_path / "e",
        log_file=tmp_path / "l",
        timeout=1,
    )
    argv = pytest_argv(spec)
    assert argv[argv.index("--") + 1 :] == [f"@{tmp_path / 's.args'}"]  # read by pytest
