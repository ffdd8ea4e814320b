"""Exit 0 is a promise: every way a selection can fail to run, or pytest can disagree with
the events, gets its code and its reason, through the real CLI on generated projects."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Project, entry

pytestmark = pytest.mark.slow

GREEN = "def test_a():\n    pass\n\ndef test_b():\n    pass\n"


def _setup(project: Project, conftest: str = "", **files: str) -> None:
    project.write("tests/test_a.py", files.pop("test_a", GREEN))
    if conftest:
        project.write("tests/conftest.py", conftest)
    for name, text in files.items():
        project.write(name, text)
    project.registry([entry("a", "tests/test_a.py", mrr=900)])


def _verdict(project: Project, *args: str) -> tuple[int, dict[str, Any]]:
    proc = project.run("--json", "run.json", *args)
    report = project.report()
    assert report["exit_code"] == proc.returncode, proc.stdout + proc.stderr
    assert [t["id"] for t in report["tests"]] == ["a"]  # the report is complete
    assert "Traceback" not in proc.stderr
    return proc.returncode, report


DESELECT_ALL = """
def pytest_collection_modifyitems(config, items):
    config.hook.pytest_deselected(items=list(items))
    items[:] = []
"""
DROP_SILENTLY = "def pytest_collection_modifyitems(items):\n    del items[:]\n"
EXIT_ZERO = """
import pytest

def pytest_collection_modifyitems(items):
    pytest.exit("nothing to do today", returncode=0)
"""


@pytest.mark.parametrize(
    ("args", "conftest", "code", "words"),
    [
        (("--", "--collect-only"), "", 3, "pytest ran with --collect-only"),
        (("--", "--setup-only"), "", 3, "pytest ran with --setup-only"),
        (("--", "-k", "no_such_test"), "", 3, "deselected"),
        ((), DESELECT_ALL, 3, "deselected"),
        ((), DROP_SILENTLY, 3, "deselected"),
        ((), EXIT_ZERO, 5, "nothing to do today"),
    ],
)
def test_a_selection_that_ran_nothing_is_never_green(
    project: Project, args: tuple[str, ...], conftest: str, code: int, words: str
) -> None:
    _setup(project, conftest)
    got, report = _verdict(project, *args)
    assert got == code
    assert report["total"]["protected_mrr"] == 0
    reasons = [r["text"] for r in report["verdict"]["reasons"]]
    assert any(words in r for r in reasons) or words in str(report["tests"]), reasons


def test_addopts_that_deselect_an_entry_make_it_unverified(project: Project) -> None:
    _setup(
        project,
        test_a="import pytest\n\n@pytest.mark.property\ndef test_a():\n    pass\n",
        **{"pytest.ini": '[pytest]\naddopts = -m "not property"\nmarkers = property\n'},
    )
    code, report = _verdict(project)
    assert code == 3
    assert report["tests"][0]["status"] == "not_run"


def test_a_timeout_during_collection_is_a_timeout_not_a_pass(project: Project) -> None:
    _setup(project, "import time\ntime.sleep(120)\n")
    code, report = _verdict(project, "--timeout", "3")
    assert code == 1
    assert report["tests"][0]["status"] == "timed_out"
    assert "during collection" in report["tests"][0]["note"]


@pytest.mark.parametrize(
    "conftest",
    [
        "def pytest_sessionfinish(session):\n    session.exitstatus = 1\n",
        "def pytest_sessionfinish(session):\n    session.testsfailed += 1\n"
        "    session.exitstatus = 1\n",
    ],
)
def test_pytest_failing_the_session_wins_over_green_events(project: Project, conftest: str) -> None:
    """What coverage's fail-under does: every test passed, the session did not."""
    _setup(project, conftest)
    code, report = _verdict(project)
    assert code == 1
    assert "no test event failed" in str(report["verdict"])


def test_one_failing_worker_under_dist_each_fails_the_run(project: Project) -> None:
    _setup(
        project,
        test_a="import os\n\ndef test_a():\n    assert os.environ['PYTEST_XDIST_WORKER'] < 'gw1'\n",
    )
    code, report = _verdict(
        project, "--no-history", "--", "-p", "xdist.plugin", "-n", "2", "--dist", "each"
    )
    assert code == 1
    assert report["tests"][0]["status"] == "failed"


@pytest.mark.parametrize(
    ("status", "allow", "code"),
    [
        ("partial", None, 3),
        ("passed", True, 0),
        ("passed", ["local"], 0),
        ("partial", ["staging"], 3),
    ],
)
def test_a_partly_skipped_entry_is_unverified_unless_skips_are_allowed(
    project: Project, status: str, allow: object, code: int
) -> None:
    project.write(
        "tests/test_a.py",
        "import pytest\n\ndef test_a():\n    pass\n\n"
        "@pytest.mark.skip(reason='not here')\ndef test_b():\n    pass\n",
    )
    extra: dict[str, Any] = {} if allow is None else {"allow_skips": allow}
    environments = {"staging": {"description": "elsewhere"}}
    project.registry([entry("a", "tests/test_a.py", mrr=900, **extra)], environments=environments)
    got, report = _verdict(project)
    assert (got, report["tests"][0]["status"]) == (code, status)
    assert report["total"]["protected_mrr"] == (900 if code == 0 else 0)


def test_xfail_and_xpass_are_their_own_outcomes(project: Project) -> None:
    project.write(
        "tests/test_a.py",
        "import pytest\n\n@pytest.mark.xfail(reason='known bug 12')\ndef test_x():\n"
        "    assert False\n\n@pytest.mark.xfail(reason='fixed?')\ndef test_y():\n    pass\n\n"
        "def test_z():\n    pass\n",
    )
    project.registry([entry("a", "tests/test_a.py", mrr=900)])
    proc = project.run("--json", "run.json", "--junit", "run.xml")
    tests = {t["nodeid"].split("::")[1]: t for t in project.report()["tests"][0]["tests"]}
    assert {n: t["status"] for n, t in tests.items()} == {
        "test_x": "xfailed",
        "test_y": "xpassed",
        "test_z": "passed",
    }
    assert tests["test_x"]["message"] == "known bug 12"
    assert project.report()["tests"][0]["status"] == "partial"  # the xfail verifies nothing
    assert proc.returncode == 3
    assert "1 xfailed, 1 xpassed" in proc.stdout.splitlines()[-1]
    assert 'type="pytest.xfail"' in (project.root / "run.xml").read_text()


@pytest.mark.parametrize(
    "conftest",
    [
        "raise RuntimeError('the database is down')\n",
        "import os\nos._exit(0)\n",
        "import pytest\npytest.exit('not today', returncode=0)\n",
    ],
)
def test_validate_is_not_ok_when_collection_breaks(project: Project, conftest: str) -> None:
    _setup(project, conftest)
    proc = project.run("validate")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "registry OK" not in proc.stdout
    assert proc.stderr.startswith("error: cannot validate") and "Traceback" not in proc.stderr


def test_detect_flakes_writes_its_reports_and_a_crash_every_round_is_broken(
    project: Project,
) -> None:
    _setup(project, test_a="import os\n\ndef test_a():\n    os._exit(3)\n")
    code, report = _verdict(project, "--detect-flakes", "2", "--junit", "run.xml")
    assert code == 5
    assert [a["status"] for a in report["tests"][0]["tests"][0]["attempts"]] == ["error", "error"]
    assert (project.root / "run.xml").exists()


def test_crashes_are_resumed_a_bounded_number_of_times(project: Project) -> None:
    crashing = "".join(f"def test_{i}():\n    import os; os._exit(1)\n\n" for i in range(9))
    _setup(project, test_a=crashing)
    code, report = _verdict(project)
    assert code == 5
    statuses = [t["status"] for t in report["tests"][0]["tests"]]
    assert statuses == ["error"] * 6 + ["not_run"] * 3  # the first run and 5 fresh ones
    assert len(report["run"]["children"]) == 6


REVIVE = """
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_collection_modifyitems(items):
    saved = list(items)
    yield
    items[:] = saved  # puts back what the runner deselected
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_plugin_cannot_put_back_a_test_the_run_did_not_select(
    project: Project, workers: str
) -> None:
    project.write("tests/test_a.py", GREEN)
    project.write("tests/test_b.py", "def test_b():\n    assert False\n")
    project.write("tests/conftest.py", REVIVE)
    project.registry([entry("a", "tests/test_a.py"), entry("b", "tests/test_b.py")])
    proc = project.run("--id", "a", "--workers", workers, "--json", "run.json", "--no-history")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tests/test_b.py" not in proc.stdout
    assert [t["id"] for t in project.report()["tests"]] == ["a"]


@pytest.mark.parametrize(
    ("conftest", "words"),
    [
        (
            "import pytest\n\n@pytest.hookimpl(trylast=True)\ndef pytest_sessionfinish(session):\n"
            "    session.exitstatus = 5\n",
            "no tests collected (exit 5)",
        ),
        ("import atexit, os\natexit.register(lambda: os._exit(5))\n", "process exited 5"),
        (
            "import atexit, os\n\ndef pytest_sessionfinish(session):\n    session.exitstatus = 1\n"
            "atexit.register(lambda: os._exit(0))\n",
            "process exited 0 though its session ended with 1",
        ),
        ("def pytest_terminal_summary():\n    raise RuntimeError('boom')\n", "RuntimeError: boom"),
        ("def pytest_unconfigure():\n    raise RuntimeError('boom')\n", "crashed at the end"),
    ],
)
def test_the_worse_of_pytests_process_and_session_wins(
    project: Project, conftest: str, words: str
) -> None:
    _setup(project, conftest)
    code, report = _verdict(project)
    assert code == 5
    assert any(words in b for b in report["run"]["broken"]), report["run"]["broken"]


def test_a_timeout_after_the_last_test_is_still_a_timeout(project: Project) -> None:
    _setup(project, "import time\n\ndef pytest_sessionfinish(session):\n    time.sleep(120)\n")
    code, report = _verdict(project, "--timeout", "3")
    assert code == 1
    assert "before pytest finished" in str(report["verdict"]["reasons"])


def test_a_module_skipped_whole_inside_a_directory_entry_makes_it_partial(project: Project) -> None:
    project.write("tests/a/test_1.py", "import pytest\npytest.skip('x', allow_module_level=True)\n")
    project.write("tests/a/test_2.py", GREEN)
    project.registry([entry("a", "tests/a")])
    proc = project.run("--json", "run.json")
    assert proc.returncode == 3, proc.stdout
    assert project.report()["tests"][0]["status"] == "partial"


def test_validate_is_not_ok_when_collection_hangs(project: Project) -> None:
    project.write("tests/test_a.py", "import time\ntime.sleep(120)\n")
    project.registry([entry("a", "tests/test_a.py")], levels={"unit": {"timeout": 3}})
    proc = project.run("validate")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "registry OK" not in proc.stdout and "timed out" in proc.stderr


def test_a_retry_that_skips_leaves_the_failure_standing(project: Project) -> None:
    marker = project.root / "seen"
    project.write(
        "tests/test_a.py",
        f"import pathlib, pytest\n\ndef test_a():\n    p = pathlib.Path({str(marker)!r})\n"
        "    if p.exists():\n        pytest.skip('second time')\n    p.write_text('1')\n"
        "    assert False, 'first time'\n",
    )
    project.registry([entry("a", "tests/test_a.py", tier=2)])
    proc = project.run("--json", "run.json")
    assert proc.returncode == 1, proc.stdout
    (test,) = project.report()["tests"][0]["tests"]
    assert test["status"] == "failed"
    assert [a["status"] for a in test["attempts"]] == ["failed", "skipped"]


def test_detect_flakes_keeps_to_the_timeout(project: Project) -> None:
    _setup(project, test_a="import time\n\ndef test_a():\n    time.sleep(0.2)\n")
    started = time.monotonic()
    proc = project.run("--detect-flakes", "1000", "--timeout", "6", "--json", "run.json")
    assert time.monotonic() - started < 40
    assert proc.returncode in (0, 1), proc.stdout[-2000:]
