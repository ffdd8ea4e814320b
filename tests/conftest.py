"""Shared helpers: generated pytest projects driven through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

BASE_REGISTRY: dict[str, Any] = {
    "version": 1,
    "default_level": "unit",
    "levels": {
        "unit": {"timeout": 60, "description": "unit"},
        "full": {"timeout": 120, "includes": ["unit"]},
    },
    "tiers": {
        1: {"name": "Critical", "retries": 0},
        2: {"name": "Stable", "retries": 1},
        3: {"name": "Ops", "retries": 2},
    },
    "gates": {
        "pr": {"require_tiers": [1]},
        "release": {"require_all": True, "min_protected_percent": 95},
    },
}


@dataclass
class Project:
    """A throwaway pytest project with a registry, run through the CLI in a subprocess."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def registry(self, tests: list[dict[str, Any]], **overrides: Any) -> Path:
        doc = {**BASE_REGISTRY, **overrides, "tests": tests}
        return self.write("config/levels.yaml", yaml.safe_dump(doc, sort_keys=False))

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(REPO / "unified_test_runner.py"), *args],
            cwd=self.root,
            env=self.child_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def child_env(self) -> dict[str, str]:
        env = {**os.environ, "NO_COLOR": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        env.pop("UTR_REGISTRY", None)
        env.pop("UTR_CHANGED_FULL", None)
        self.scratch.mkdir(exist_ok=True)
        env["TMPDIR"] = str(self.scratch)
        return {**env, **self.env}

    @property
    def scratch(self) -> Path:
        """The runner's temporary directory: kept logs are removed along with tmp_path."""
        return self.root.with_name(self.root.name + "-tmp")

    def events_files(self) -> list[Path]:
        """The first child's events of every run so far (their working directories)."""
        return list((self.root / ".runner" / "logs").glob("*/events-1.jsonl"))

    def report(self, name: str = "run.json") -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / name).read_text(encoding="utf-8"))
        return data


def entry(
    entry_id: str, path: str, *, tier: int = 1, mrr: float = 1000, level: str = "unit", **extra: Any
) -> dict[str, Any]:
    return {"id": entry_id, "tier": tier, "mrr": mrr, "level": level, "path": path, **extra}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    yield Project(root=tmp_path)
