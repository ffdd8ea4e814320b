"""The prewarmed pytest child: used when it fits the run, dropped when it does not, and
never left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Project, entry

pytestmark = pytest.mark.slow

PROBE = """
import os

def test_sees_the_environment():
    assert os.environ["PROBE_VALUE"] == "from-the-profile"

def test_fails():
    assert False
"""


def _prewarmed_children(root: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"import prewarmed" in cmdline and cwd == str(root):
            found.append(int(proc.name))
    return found


@pytest.fixture
def probe(project: Project) -> Project:
    project.write("tests/test_probe.py", PROBE)
    profile = {"probe": {"variables": {"PROBE_VALUE": "from-the-profile"}}}
    project.registry([entry("probe", "tests/test_probe.py")], environments=profile)
    return project


@pytest.mark.parametrize("prewarm", ["on", "off"])
def test_a_run_reads_the_same_either_way(probe: Project, prewarm: str) -> None:
    if prewarm == "off":
        probe.env["UTR_NO_PREWARM"] = "1"
    proc = probe.run("--env", "probe", "--json", "run.json", "--no-history")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    tests = {t["nodeid"].split("::")[1]: t["status"] for t in probe.report()["tests"][0]["tests"]}
    assert tests == {"test_sees_the_environment": "passed", "test_fails": "failed"}
    log = Path(probe.report()["run"]["log_file"]).read_text()
    assert "test_fails" in log  # pytest's own output still lands in the kept log


def test_an_interpreter_variable_makes_the_runner_spawn_afresh(probe: Project) -> None:
    """PYTHONPATH is read when an interpreter starts: the waiting child cannot take it."""
    extra = probe.root / "extra"
    probe.write("extra/probe_helper.py", "VALUE = 'from-the-profile'\n")
    probe.write(
        "tests/test_probe.py",
        "import os, probe_helper\n\ndef test_sees_the_environment():\n"
        "    assert probe_helper.VALUE == os.environ['PROBE_VALUE']\n",
    )
    profile = {
        "probe": {"variables": {"PROBE_VALUE": "from-the-profile", "PYTHONPATH": str(extra)}}
    }
    probe.registry([entry("probe", "tests/test_probe.py")], environments=profile)
    proc = probe.run("--env", "probe", "--no-history")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nothing_is_left_waiting_after_a_usage_error_or_a_listing(probe: Project) -> None:
    assert probe.run("--workers", "many").returncode == 2
    assert probe.run("--list").returncode == 0
    assert probe.run("--env", "nowhere").returncode == 2
    assert _prewarmed_children(probe.root) == []
