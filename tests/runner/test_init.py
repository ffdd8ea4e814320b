"""`init` on generated projects: an entry per file or per directory, and nothing the
project's own options never run."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import Project

pytestmark = pytest.mark.slow

TWO = "def test_one():\n    pass\n\ndef test_two():\n    pass\n"
SLOW = "import pytest\n\n@pytest.mark.slow\ndef test_slow():\n    pass\n"
MIXED = (
    "import pytest\n\ndef test_fast():\n    pass\n\n@pytest.mark.slow\ndef test_slow():\n    pass\n"
)
CONFIG = '[pytest]\naddopts = -m "not slow"\nmarkers = slow: slow\n'


@pytest.fixture
def layered(project: Project) -> Project:
    project.write("pytest.ini", CONFIG)
    project.write("tests/api/test_orders.py", TWO)
    project.write("tests/api/test_users.py", TWO)
    project.write("tests/perf/test_load.py", SLOW)  # the project never runs it
    project.write("tests/perf/test_mixed.py", MIXED)
    project.write("tests/test_top.py", TWO)
    return project


def _paths(project: Project, name: str) -> list[str]:
    doc = yaml.safe_load((project.root / name).read_text())
    return [e["path"] for e in doc["tests"]]


def test_an_entry_per_file_leaves_out_what_never_runs(layered: Project) -> None:
    made = layered.run("init", "-o", "by-file.yaml")
    assert made.returncode == 0, made.stdout + made.stderr
    assert _paths(layered, "by-file.yaml") == [
        "tests/api/test_orders.py",
        "tests/api/test_users.py",
        "tests/perf/test_mixed.py",
        "tests/test_top.py",
    ]
    assert "wrote by-file.yaml: 4 entries for 7 pytest tests" in made.stdout
    never = "left out 1 file whose tests the project's own options never run: "
    assert never + "tests/perf/test_load.py" in made.stdout
    text = (layered.root / "by-file.yaml").read_text()
    assert "# 1 pytest test; 1 more the project's options deselect (partial)" in text
    assert layered.run("--registry", "by-file.yaml", "validate").returncode == 0


def test_an_entry_per_directory_whose_tests_all_run(layered: Project) -> None:
    made = layered.run("init", "-o", "by-dir.yaml", "--by", "directory")
    assert made.returncode == 0, made.stdout + made.stderr
    assert _paths(layered, "by-dir.yaml") == [
        "tests/api",
        "tests/perf/test_mixed.py",
        "tests/test_top.py",
    ]
    run = layered.run("--registry", "by-dir.yaml", "--json", "run.json")
    statuses = {t["id"]: t["status"] for t in layered.report()["tests"]}
    assert statuses == {"api": "passed", "mixed": "partial", "top": "passed"}, run.stdout
