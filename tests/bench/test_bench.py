"""The benchmarks run (a quick smoke mode); no timing is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_quick_benchmark_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--skip-integration", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.with_suffix(".json").read_text())
    names = {r["name"].split(",")[0] for r in rows}
    assert {
        "--list on the shipped registry",
        "launcher cold start to all services healthy",
        "user message to agent_completed over WebSocket",
    } <= names
    assert all(r["value"] > 0 for r in rows)
    assert "| figure | value | baseline | ratio | target | met | notes |" in out.read_text()
