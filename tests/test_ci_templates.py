"""The CI templates in docs/ci stay valid: they parse and use the runner the way it works."""

from __future__ import annotations

from typing import Any

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
