"""`--changed REF`: only the entries whose `covers` match what git says changed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, entry

pytestmark = pytest.mark.slow


def _git(project: Project, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=project.root,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(project: Project) -> Project:
    project.write("src/billing/invoice.py", "TOTAL = 1\n")
    project.write("src/auth/login.py", "OK = True\n")
    project.write("docs/guide.md", "guide\n")
    for name in ("billing", "auth", "smoke"):
        project.write(f"tests/test_{name}.py", f"def test_{name}():\n    pass\n")
    project.registry(
        [
            entry("billing", "tests/test_billing.py", mrr=5000, covers=["src/billing/**"]),
            entry("auth", "tests/test_auth.py", mrr=3000, covers=["src/auth/*.py"]),
            entry("smoke", "tests/test_smoke.py", mrr=100),  # no covers: always selected
        ]
    )
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "base")
    _git(project, "checkout", "-q", "-b", "feature")
    return project


def _plan(project: Project, ref: str = "main") -> dict[str, Any]:
    proc = project.run("plan", "--changed", ref, "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_a_committed_change_selects_what_covers_it(repo: Project) -> None:
    repo.write("src/billing/invoice.py", "TOTAL = 2\n")
    _git(repo, "commit", "-q", "-am", "billing change")
    plan = _plan(repo)
    assert [t["id"] for t in plan["tests"]] == ["billing", "smoke"]
    changed = plan["changed"]
    assert changed == {
        "ref": "main",
        "files": ["src/billing/invoice.py"],
        "touched": ["billing"],
        "touched_mrr": 5000,
        "always": ["smoke"],
        "left_out": ["auth"],
    }
    proc = repo.run("--changed", "main", "--json", "run.json", "--no-history")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "this change touches $5,000 MRR across 1 entry" in proc.stdout
    assert {t["id"] for t in repo.report()["tests"]} == {"billing", "smoke"}


def test_uncommitted_and_untracked_work_counts_and_docs_touch_nothing(repo: Project) -> None:
    repo.write("docs/guide.md", "more\n")
    assert [t["id"] for t in _plan(repo)["tests"]] == ["smoke"]
    repo.write("src/auth/new_flow.py", "x = 1\n")  # untracked
    assert [t["id"] for t in _plan(repo)["tests"]] == ["auth", "smoke"]


def test_a_change_to_the_test_file_itself_selects_it(repo: Project) -> None:
    repo.write("tests/test_auth.py", "def test_auth():\n    assert True is not False\n")
    assert [t["id"] for t in _plan(repo)["tests"]] == ["auth", "smoke"]


def test_a_change_that_touches_nothing_runs_only_what_has_no_covers(repo: Project) -> None:
    repo.registry([entry("billing", "tests/test_billing.py", mrr=5000, covers=["src/billing/**"])])
    _git(repo, "commit", "-q", "-am", "registry")
    proc = repo.run("--changed", "main", "--json", "run.json", "--no-history")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "touches $0 MRR across 0 entries" in proc.stdout
    assert repo.report()["tests"] == []


def test_bad_refs_are_usage_errors(repo: Project) -> None:
    for bad in ("no-such-branch", "--output=/tmp/x", ""):
        proc = repo.run("plan", "--changed", bad)
        assert proc.returncode == 2 and proc.stderr.startswith("error: --changed"), bad
        assert "Traceback" not in proc.stderr


def test_outside_a_git_repository_is_a_usage_error(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.registry([entry("a", "tests/test_a.py", covers=["src/**"])])
    proc = project.run("--changed", "main")
    assert proc.returncode == 2 and "not a git repository" in proc.stderr.lower(), proc.stderr


def test_covers_must_be_a_list_of_relative_globs(project: Project) -> None:
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    for bad in ("src/**", ["/abs/**"], [3]):
        project.registry([entry("a", "tests/test_a.py", covers=bad)])
        proc = project.run("plan")
        assert proc.returncode == 2 and "'covers'" in proc.stderr, bad


def test_a_project_in_a_subdirectory_of_the_repository(tmp_path: Path) -> None:
    """Paths are matched relative to the project root; changes outside it touch nothing."""
    outer = Project(root=tmp_path)
    outer.write("other/service.py", "x = 1\n")
    project = Project(root=tmp_path / "proj")
    project.write("src/billing/invoice.py", "TOTAL = 1\n")
    project.write("tests/test_billing.py", "def test_billing():\n    pass\n")
    project.registry([entry("billing", "tests/test_billing.py", covers=["src/billing/**"])])
    _git(outer, "init", "-q", "-b", "main")
    _git(outer, "add", ".")
    _git(outer, "commit", "-q", "-m", "base")
    outer.write("other/service.py", "x = 2\n")
    assert _plan(project)["tests"] == []
    project.write("src/billing/invoice.py", "TOTAL = 2\n")
    plan = _plan(project)
    assert [t["id"] for t in plan["tests"]] == ["billing"]
    assert plan["changed"]["files"] == ["src/billing/invoice.py"]


def _with_nets(repo: Project, **changed: Any) -> None:
    """The fixture's registry with a `changed:` section, committed (so it is no change)."""
    repo.registry(
        [
            entry("billing", "tests/test_billing.py", mrr=5000, covers=["src/billing/**"]),
            entry("auth", "tests/test_auth.py", mrr=3000, covers=["src/auth/*.py"], tier=1),
            entry("smoke", "tests/test_smoke.py", mrr=100),
        ],
        changed=changed,
    )
    _git(repo, "commit", "-q", "-am", "safety nets")


def test_a_file_that_forces_a_full_run_runs_everything_and_says_why(repo: Project) -> None:
    _with_nets(repo, always_full=["pyproject.toml", "**/conftest.py"])
    repo.write("tests/conftest.py", "")
    plan = _plan(repo)
    assert [t["id"] for t in plan["tests"]] == ["billing", "auth", "smoke"]
    assert plan["changed"]["mode"] == "full"
    assert plan["changed"]["full"] == "tests/conftest.py matches changed.always_full"
    proc = repo.run("--changed", "main", "--no-history")
    assert "all run anyway, tests/conftest.py matches changed.always_full" in proc.stdout


def test_the_environment_forces_a_full_run(repo: Project) -> None:
    repo.env["UTR_CHANGED_FULL"] = "1"
    plan = _plan(repo)
    assert len(plan["tests"]) == 3 and plan["changed"]["full"] == "$UTR_CHANGED_FULL is set"
    repo.env["UTR_CHANGED_FULL"] = "0"
    assert [t["id"] for t in _plan(repo)["tests"]] == ["smoke"]


def test_entries_and_tiers_that_are_never_skipped(repo: Project) -> None:
    _with_nets(repo, never_skip=["billing"], never_skip_tiers=[1])
    plan = _plan(repo)
    assert [t["id"] for t in plan["tests"]] == ["billing", "auth", "smoke"]
    assert plan["changed"]["never_skipped"] == ["billing", "auth"]
    assert plan["changed"]["left_out"] == [] and "mode" not in plan["changed"]


@pytest.mark.parametrize(
    ("nets", "message"),
    [
        ({"never_skip": ["nobody"]}, "unknown entry 'nobody'"),
        ({"never_skip_tiers": [7]}, "must list tiers of"),
        ({"always_full": "pyproject.toml"}, "must be a list"),
        ({"sometimes": []}, "unknown key 'sometimes'"),
    ],
)
def test_bad_safety_nets_are_one_line(repo: Project, nets: dict[str, Any], message: str) -> None:
    repo.registry([entry("smoke", "tests/test_smoke.py")], changed=nets)
    proc = repo.run("plan")
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


AUTH_READS_THE_GUIDE = "def test_auth():\n    assert open('docs/guide.md').read() == 'guide\\n'\n"


def test_observe_runs_everything_and_measures_what_skipping_would_miss(repo: Project) -> None:
    """auth's test depends on a file its covers do not name: a change there breaks it,
    and --changed alone would have skipped it. --observe finds the miss."""
    repo.write("tests/test_auth.py", AUTH_READS_THE_GUIDE)
    _git(repo, "commit", "-q", "-am", "auth reads the guide")
    repo.write("docs/guide.md", "rewritten\n")
    repo.write("src/billing/invoice.py", "TOTAL = 3\n")
    _git(repo, "commit", "-q", "-am", "guide and billing")
    proc = repo.run("--changed", "HEAD~1", "--observe", "--json", "run.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # auth failed: it ran
    report = repo.report()
    statuses = {t["id"]: t["status"] for t in report["tests"]}
    assert statuses == {"billing": "passed", "auth": "failed", "smoke": "passed"}
    assert report["selection_recall"] == {
        "skipped": ["auth"],
        "skipped_mrr": 3000,
        "failing": 1,
        "missed": ["auth"],
        "recall": 0.0,
        "recall_mrr": 0.0,
    }
    assert "1 of 1 failing entries among them: auth; recall 0%" in proc.stdout
    runs = json.loads(repo.run("history", "--json").stdout)["runs"]
    assert (runs[-1]["recall"], runs[-1]["recall_mrr"]) == (0.0, 0.0)


def test_observe_needs_a_ref(repo: Project) -> None:
    proc = repo.run("--observe")
    assert proc.returncode == 2 and "--observe measures --changed REF" in proc.stderr


def test_a_file_moved_out_of_the_covers_touches_its_entry(repo: Project) -> None:
    _git(repo, "mv", "src/auth/login.py", "src/other_login.py")
    assert [t["id"] for t in _plan(repo)["tests"]] == ["auth", "smoke"]
    _git(repo, "commit", "-qm", "moved")
    assert [t["id"] for t in _plan(repo)["tests"]] == ["auth", "smoke"]
