"""Nothing is lost: every fault still writes a complete report, and bad input is one line."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Project, entry

pytestmark = pytest.mark.slow

GREEN = "def test_a():\n    pass\n"


def _one_line(proc_stderr: str) -> None:
    assert "Traceback" not in proc_stderr
    assert len(proc_stderr.strip().splitlines()) == 1, proc_stderr


def test_an_import_error_in_a_file_registered_by_node_id_is_a_broken_run(project: Project) -> None:
    project.write("tests/test_x.py", "import no_such_module_here\n\ndef test_x():\n    pass\n")
    project.registry([entry("x", "tests/test_x.py::test_x", mrr=500)])
    proc = project.run("--json", "run.json")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    (result,) = project.report()["tests"]
    assert result["status"] == "error"
    assert "no_such_module_here" in result["collect_error"]


def test_a_retry_of_a_test_with_a_140_kb_id_is_not_too_long(project: Project) -> None:
    project.write(
        "tests/test_long.py",
        "import pytest\n\n@pytest.mark.parametrize('v', ['x' * 140_000])\n"
        "def test_long(v):\n    assert False\n",
    )
    project.registry([entry("long", "tests/test_long.py", tier=2)])
    proc = project.run("--json", "run.json")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr
    (test,) = project.report()["tests"][0]["tests"]
    assert [a["status"] for a in test["attempts"]] == ["failed", "failed"]  # retried, once


def test_a_test_that_leaves_a_directory_in_the_runs_own_directory(project: Project) -> None:
    project.write(
        "tests/conftest.py",
        "import os, pathlib\n\ndef pytest_configure(config):\n"
        "    spec = config.getoption('utr_spec', None)\n"
        "    if spec:\n"
        "        (pathlib.Path(spec).parent / 'left' / 'behind').mkdir(parents=True)\n",
    )
    project.write("tests/test_a.py", "def test_a():\n    assert False\n")
    project.registry([entry("a", "tests/test_a.py")])
    proc = project.run("--json", "run.json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert project.report()["tests"][0]["status"] == "failed"


@pytest.mark.parametrize("damage", ["garbage", "locked"])
def test_a_corrupt_or_locked_history_is_a_warning(project: Project, damage: str) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", "tests/test_a.py")])
    history = project.root / ".runner/history.sqlite"
    history.parent.mkdir()
    if damage == "garbage":
        history.write_bytes(b"this is not a database" * 100)
    lock = sqlite3.connect(history)
    if damage == "locked":
        lock.execute("CREATE TABLE t (x)")
        lock.execute("BEGIN EXCLUSIVE")
    proc = project.run("--json", "run.json")
    lock.close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning: could not record this run" in proc.stderr
    assert project.report()["exit_code"] == 0
    if damage == "garbage":
        shown = project.run("history")
        assert shown.returncode == 2
        _one_line(shown.stderr)


def test_more_shards_than_entries_an_empty_shard_is_a_green_reported_run(project: Project) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", "tests/test_a.py")])
    codes = [project.run("--shard", f"{k}/3", "--json", f"s{k}.json").returncode for k in (1, 2, 3)]
    assert codes == [0, 0, 0]
    assert sum(len(project.report(f"s{k}.json")["tests"]) for k in (1, 2, 3)) == 1
    merged = project.run("merge", "s1.json", "s2.json", "s3.json", "--json", "m.json")
    assert merged.returncode == 0, merged.stdout
    assert project.report("m.json")["total"]["protected_mrr"] == 1000


def test_shards_planned_from_different_durations_are_caught(project: Project) -> None:
    for name in ("a", "b", "c", "d"):
        project.write(f"tests/test_{name}.py", GREEN)
    project.registry([entry(n, f"tests/test_{n}.py") for n in "abcd"])
    assert project.run("--shard", "1/2", "--json", "s1.json").returncode == 0
    project.write(".test_durations.json", json.dumps({"a": 9.0, "b": 1.0, "c": 1.0, "d": 1.0}))
    assert project.run("--shard", "2/2", "--json", "s2.json").returncode == 0
    merged = project.run("merge", "s1.json", "s2.json", "--json", "m.json")
    assert merged.returncode == 5, merged.stdout
    assert "planned from different inputs" in project.report("m.json")["run"]["broken"][0]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"schema": "unified-test-runner/run", "schema_ver', "not a JSON report"),
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b'{"schema": "unified-test-runner/run", "schema_version": 1}', "schema version 1"),
        (b'{"schema": "unified-test-runner/run", "schema_version": 2, "run": {}}', "incomplete"),
        (b"[1, 2, 3]", "not a unified-test-runner run report"),
    ],
)
def test_report_of_a_damaged_file_is_one_line(project: Project, content: bytes, words: str) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", "tests/test_a.py")])
    (project.root / "bad.json").write_bytes(content)
    for command in (("report", "bad.json"), ("merge", "bad.json")):
        proc = project.run(*command)
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr
        _one_line(proc.stderr)


def test_a_report_with_infinite_durations_is_refused(project: Project) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", "tests/test_a.py")])
    assert project.run("--json", "run.json").returncode == 0
    text = (project.root / "run.json").read_text()
    (project.root / "inf.json").write_text(
        text.replace('"duration_s": 0', '"duration_s": Infinity', 1)
    )
    proc = project.run("report", "inf.json")
    assert proc.returncode == 2 and "Infinity" in proc.stderr
    _one_line(proc.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ("--budget", "nan"),
        ("--budget", "inf"),
        ("--timeout", "nan"),
        ("--timeout", "-1"),
        ("--json", "x.json", "--junit", "x.json"),
        ("--markdown", "out/r", "--html", "./out/../out/r"),
    ],
)
def test_bad_numbers_and_one_file_for_two_reports_are_usage_errors(
    project: Project, args: tuple[str, ...]
) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", "tests/test_a.py")])
    proc = project.run(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    _one_line(proc.stderr)
    assert "collected" not in proc.stdout  # refused before anything ran


def test_durations_of_infinity_are_ignored(project: Project) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", "tests/test_a.py")])
    (project.root / ".test_durations.json").write_text('{"a": Infinity}')
    proc = project.run("--budget", "10", "--json", "run.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_report_paths_are_written_through_links_and_pipes(project: Project) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", "tests/test_a.py")])
    (project.root / "real").mkdir()
    (project.root / "link.json").symlink_to(project.root / "real" / "run.json")
    fifo = project.root / "junit.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    proc = project.run("--json", "link.json", "--junit", str(fifo), "--markdown", "/dev/null")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (project.root / "link.json").is_symlink()
    assert json.loads((project.root / "real/run.json").read_text())["exit_code"] == 0
    assert b"<testsuites" in os.read(reader, 1 << 20)
    os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_new_report_gets_the_users_umask(project: Project, tmp_path: Path) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", "tests/test_a.py")])
    old = os.umask(0o022)
    try:
        assert project.run("--json", "run.json").returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((project.root / "run.json").stat().st_mode) == 0o644
    assert not [p for p in project.root.iterdir() if p.name.endswith(".tmp")]


def test_a_test_that_removes_the_runs_own_directory(project: Project) -> None:
    project.write(
        "tests/conftest.py",
        "import pathlib, shutil\n\ndef pytest_configure(config):\n"
        "    config._utr_dir = pathlib.Path(config.getoption('utr_spec')).parent\n\n"
        "def pytest_runtest_teardown(item):\n"
        "    shutil.rmtree(item.config._utr_dir, ignore_errors=True)\n",
    )
    project.write("tests/test_a.py", "def test_a():\n    assert False\n")
    project.registry([entry("a", "tests/test_a.py", tier=2)])  # one retry, in that directory
    proc = project.run("--json", "run.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert project.report()["tests"][0]["status"] == "failed"


@pytest.mark.parametrize("stdout", ["closed", "full", "pipe"])
def test_a_broken_stdout_loses_no_report(project: Project, stdout: str) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", "tests/test_a.py")])
    command = f"{sys.executable} {REPO / 'unified_test_runner.py'} --json run.json"
    shell = {"closed": f"{command} >&-", "full": f"{command} >/dev/full"}
    shell["pipe"] = f"{command} | head -c 10; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(
        ["bash", "-c", shell[stdout]],
        cwd=project.root,
        env=project.child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert project.report()["exit_code"] == 0


def test_a_fifo_nobody_reads_is_a_lost_report_not_a_hang(project: Project) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", "tests/test_a.py")])
    os.mkfifo(project.root / "fifo")
    proc = project.run("--json", "fifo", "--junit", "run.xml", timeout=60)
    assert proc.returncode == 5
    assert "fifo" in proc.stderr and "no process reads" in proc.stderr
    assert (project.root / "run.xml").exists()


@pytest.mark.parametrize(
    ("path", "words"), [("tests/test_a.py\0", "not a relative path"), ("/etc", "must be relative")]
)
def test_a_bad_registry_path_is_one_line(project: Project, path: str, words: str) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", path)])
    proc = project.run("--list")
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    _one_line(proc.stderr)


@pytest.mark.parametrize(
    ("root", "words"), [("/", "not a relative"), ("..", "escapes"), ("nope", "does not exist")]
)
def test_suite_roots_stay_inside_the_project(project: Project, root: str, words: str) -> None:
    project.write("tests/test_a.py", GREEN)
    project.registry([entry("a", "tests/test_a.py")], suite_roots=[root])
    proc = project.run("--list")
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    _one_line(proc.stderr)


def test_control_characters_and_markup_stay_out_of_the_terminal_and_markdown(
    project: Project,
) -> None:
    project.write(
        "tests/test_a.py",
        "def test_a():\n    assert False, 'evil \\x1b[2J <script>alert(1)</script> \\x00'\n",
    )
    project.registry([entry("a", "tests/test_a.py")])
    proc = project.run("--markdown", "run.md")
    assert proc.returncode == 1
    assert "\x1b" not in proc.stdout and "\x00" not in proc.stdout
    markdown = (project.root / "run.md").read_text()
    assert "<script>" not in markdown and "\x1b" not in markdown and "&lt;script&gt;" in markdown
