"""Stop signals and leftovers: a signal at any moment still writes the report with its own
exit code, and nothing the run started outlives it, in whatever session it hides."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, Project, entry

pytestmark = pytest.mark.slow

SLOW = "import time\n\ndef test_one():\n    pass\n\ndef test_slow():\n    time.sleep(60)\n"


def _start(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "unified_test_runner.py"), *args],
        cwd=project.root,
        env=project.child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has a handler for `sig` yet (its SigCgt mask)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1], 16)
    return bool(caught >> (int(sig) - 1) & 1)


def _wait_for(predicate: Callable[[], object], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def _marked(marker: str) -> list[int]:
    """Live processes whose environment carries `marker` (what a run started)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                found.append(int(proc.name)) if state not in ("Z", "X") else None
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
)
def test_a_stop_signal_during_a_test_keeps_the_report(
    project: Project, sig: signal.Signals, code: int
) -> None:
    project.write("tests/test_slow.py", SLOW)
    project.registry([entry("slow", "tests/test_slow.py")])
    proc = _start(project, "--json", "run.json")
    _wait_for(
        lambda: any('test_slow"' in p.read_text() for p in project.events_files()),
        "test_slow started",
    )
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, out + err
    report = project.report()
    assert report["run"]["interrupted_by"] == sig.name
    statuses = {t["nodeid"].split("::")[1]: t["status"] for t in report["tests"][0]["tests"]}
    assert statuses == {"test_one": "passed", "test_slow": "not_run"}
    assert sig.name in report["tests"][0]["tests"][1]["message"]


def test_a_signal_before_anything_ran_still_writes_the_report(project: Project) -> None:
    project.write("tests/test_slow.py", SLOW)
    project.registry([entry("slow", "tests/test_slow.py")])
    proc = _start(project, "--json", "run.json")
    _wait_for(lambda: _catches(proc.pid, signal.SIGTERM), "the handler is installed", 10)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert project.report()["tests"][0]["status"] == "not_run"
    assert project.report()["exit_code"] == 143


HIDER = """
import os, subprocess, sys, threading, time

CHILD = "import time; time.sleep(300)"

def test_hides_processes():
    subprocess.Popen([sys.executable, "-c", CHILD], start_new_session=True)
    if os.fork() == 0:  # a double fork into a session of its own
        os.setsid()
        if os.fork() == 0:
            time.sleep(300)
        os._exit(0)
    subprocess.Popen([sys.executable, "-c", CHILD])
    {tail}
"""


@pytest.mark.parametrize("how", ["ends", "times_out", "interrupted"])
def test_nothing_a_run_started_outlives_it(project: Project, how: str) -> None:
    marker = f"UTR_LEFTOVER_{uuid.uuid4().hex}"
    project.env[marker] = "1"
    tail = "time.sleep(60)" if how != "ends" else "pass"
    project.write("tests/test_hide.py", HIDER.format(tail=tail))
    project.registry([entry("hide", "tests/test_hide.py")])
    proc = _start(project, "--json", "run.json", "--timeout", "5" if how == "times_out" else "60")
    if how == "interrupted":
        _wait_for(lambda: len(_marked(marker)) >= 5, "the hidden processes started")
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == {"ends": 0, "times_out": 1, "interrupted": 130}[how], out + err
    assert _marked(marker) == []


def test_a_non_daemon_thread_does_not_hold_the_run(project: Project) -> None:
    project.write(
        "tests/test_thread.py",
        "import threading\n\nstop = threading.Event()\n\ndef test_leaves_a_thread():\n"
        "    threading.Thread(target=stop.wait).start()\n",
    )
    project.registry([entry("thread", "tests/test_thread.py")])
    started = time.monotonic()
    proc = project.run("--json", "run.json")
    assert time.monotonic() - started < 30  # the level timeout is 60 s
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "did not exit" in project.report()["run"]["warnings"][0]
    assert project.report()["run"]["children"][0]["stopped"] == "lingered"


def test_the_tests_see_the_users_import_path_not_the_runners(project: Project) -> None:
    """A subprocess of a test imports the project's `tests` package, not the runner's."""
    project.write("tests/__init__.py", "WHOSE = 'the project'\n")
    project.write(
        "tests/test_path.py",
        "import os, subprocess, sys\n\ndef test_path():\n"
        "    assert os.environ.get('PYTHONPATH', '') == os.environ.get('EXPECTED_PYTHONPATH', '')\n"
        "    out = subprocess.run([sys.executable, '-c', 'import tests; print(tests.WHOSE)'],\n"
        "                         capture_output=True, text=True, check=True).stdout\n"
        "    assert out.strip() == 'the project'\n",
    )
    project.env["EXPECTED_PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    project.registry([entry("path", "tests/test_path.py")])
    proc = project.run("--json", "run.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr


PLATFORM = """
import os, subprocess, sys, time
from pathlib import Path

def test_with_the_platform():
    env = {{**os.environ, "PYTHONPATH": {repo!r}}}
    launcher = subprocess.Popen([sys.executable, "-m", "apex.launcher"], env=env,
                                stdout=subprocess.PIPE, text=True)
    for line in launcher.stdout:
        if line.startswith("ready in"):
            break
    Path("ready").write_text("yes")
    time.sleep(60)
"""


@pytest.mark.parametrize("stop", ["SIGINT", "timeout"])
def test_the_apex_platform_does_not_outlive_a_stopped_run(project: Project, stop: str) -> None:
    """The launcher puts each service in a session of its own: out of the group's reach."""
    marker = f"UTR_LEFTOVER_{uuid.uuid4().hex}"
    project.env[marker] = "1"
    project.write("tests/test_platform.py", PLATFORM.format(repo=str(REPO)))
    project.registry([entry("platform", "tests/test_platform.py")])
    proc = _start(project, "--json", "run.json", "--timeout", "15" if stop == "timeout" else "60")
    _wait_for((project.root / "ready").exists, "the platform is ready", 40)
    assert len(_marked(marker)) >= 6  # pytest, the launcher, redis and four services
    if stop == "SIGINT":
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if stop == "SIGINT" else 1), out + err
    assert _marked(marker) == []


RESPAWN = """
import os, signal, subprocess, sys, time

RESPAWNER = '''
import os, signal, time
def respawn(signum, frame):
    if os.fork() == 0:
        time.sleep(300)
    os._exit(0)
signal.signal(signal.SIGTERM, respawn)
time.sleep(300)
'''
HOPPER = '''
import os, time
os.setsid()
while True:
    if os.fork():
        os._exit(0)
    time.sleep(0.05)
'''

def test_leaves_tricky_processes():
    subprocess.Popen([sys.executable, "-c", RESPAWNER], start_new_session=True)
    subprocess.Popen([sys.executable, "-c", HOPPER])
    time.sleep(0.5)
"""


def test_processes_that_respawn_or_hop_do_not_outlive_the_run(project: Project) -> None:
    marker = f"UTR_LEFTOVER_{uuid.uuid4().hex}"
    project.env[marker] = "1"
    project.write("tests/test_tricky.py", RESPAWN)
    project.registry([entry("tricky", "tests/test_tricky.py")])
    proc = project.run("--json", "run.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _marked(marker) == []


def test_pytest_does_not_outlive_a_runner_killed_outright(project: Project) -> None:
    marker = f"UTR_LEFTOVER_{uuid.uuid4().hex}"
    project.env[marker] = "1"
    project.write("tests/test_slow.py", SLOW)
    project.registry([entry("slow", "tests/test_slow.py")])
    proc = _start(project, "--json", "run.json")
    _wait_for(
        lambda: any("test_slow" in p.read_text() for p in project.events_files()),
        "test_slow started",
    )
    proc.kill()
    proc.communicate(timeout=30)
    _wait_for(lambda: _marked(marker) == [], "pytest went with the runner", 15)


LEAVES_FILES = """
import tempfile

def test_leaves_a_directory():
    made = tempfile.mkdtemp(prefix="left-behind-")
    open(made + "/data", "w").close()
    assert False, made
"""


def test_temporary_files_go_with_the_run_and_logs_are_bounded(project: Project) -> None:
    """The tests' TMPDIR is the run's own and goes with it; a failed run's pytest output
    stays under .runner/logs/, the newest twenty runs of it."""
    project.write("tests/test_files.py", LEAVES_FILES)
    project.registry([entry("files", "tests/test_files.py")])
    logs = project.root / ".runner" / "logs"
    for n in range(22):
        (logs / f"20000101-000000-old{n:02}").mkdir(parents=True)
    proc = project.run("--json", "run.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    made = project.report()["tests"][0]["tests"][0]["message"].split("AssertionError: ")[1]
    assert "left-behind-" in made and not Path(made).exists()
    log = Path(project.report()["run"]["log_file"])
    assert log.parent.parent == logs and "test_leaves_a_directory" in log.read_text()
    kept = sorted(p.name for p in logs.iterdir())
    assert len(kept) == 20 and kept[-1] == log.parent.name and "old00" not in kept[0]
