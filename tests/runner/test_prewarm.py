"""The prewarmed pytest child: used when it fits the run, dropped when it does not, and
never left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Project, entry

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_nothing_is_left_waiting_after_a_usage_error_or_a_listing(probe: Project) -> None:
    assert probe.run("--workers", "many").returncode == 2
    assert probe.run("--list").returncode == 0
    assert probe.run("--env", "nowhere").returncode == 2
    assert _prewarmed_children(probe.root) == []


def test_the_options_that_take_a_value_are_the_command_lines_own() -> None:
    """The entry point reads argv before click is imported; its table must be click's."""
    import click  # noqa: PLC0415

    from runner.cli import cli  # noqa: PLC0415
    from runner.entry import COMMANDS, TAKES_VALUE  # noqa: PLC0415

    options = [p for c in cli.commands.values() for p in c.params if isinstance(p, click.Option)]
    assert {name for p in options if not p.is_flag for name in p.opts} == TAKES_VALUE
    assert set(cli.commands) == COMMANDS


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], True),
        (["--level", "integration"], True),
        (["--id", "report"], True),  # an id, not the report command
        (["--id=plan", "--tier", "1"], True),
        (["--registry", "r.yaml", "validate"], True),
        (["init", "tests"], True),
        (["report", "run.json"], False),
        (["--registry", "run", "plan"], False),  # 'run' is the registry's file name here
        (["merge", "a.json", "b.json"], False),
        (["--list"], False),
        (["--level", "smoke", "--list"], False),
        (["run", "--help"], False),
        (["--", "--list"], True),  # pytest's own arguments are not the runner's
        (["--pattern", "--list"], True),  # a pattern that happens to look like a flag
    ],
)
def test_whether_a_command_line_runs_pytest_is_read_exactly(
    argv: list[str], expected: bool
) -> None:
    from runner.entry import runs_pytest  # noqa: PLC0415

    assert runs_pytest(argv) is expected
