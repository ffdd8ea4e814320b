"""Scale: the same CPU-bound suite in one process and spread over workers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.measure import Figure, runner_argv, side_by_side, timed, write_registry

NO_STATE = ("--no-history", "--no-record-durations")
CPU_TEST = """
import pytest

@pytest.mark.parametrize("n", range({per_file}))
def test_cpu(n):
    total = 0
    for i in range({loops}):
        total += i * i % 7
    assert total >= 0
"""


def make_cpu_project(root: Path, files: int, per_file: int, loops: int) -> Path:
    (root / "tests").mkdir(parents=True)
    entries: list[dict[str, object]] = []
    for f in range(files):
        path = f"tests/test_cpu{f}.py"
        (root / path).write_text(CPU_TEST.format(per_file=per_file, loops=loops))
        entries.append({"id": f"cpu{f}", "tier": 1, "mrr": 100, "level": "unit", "path": path})
    write_registry(root, entries)
    return root


def workers_speedup(reps: int, files: int = 8, loops: int = 2_000_000) -> Figure:
    """Serial wall time over `--workers N` wall time (N = CPU cores, at least 2)."""
    workers = str(max(2, os.cpu_count() or 2))
    with tempfile.TemporaryDirectory() as tmp:
        root = make_cpu_project(Path(tmp), files, 2, loops)
        base = ["--registry", "levels.yaml", *NO_STATE]
        spread, serial = side_by_side(
            lambda: timed(runner_argv(*base, "--workers", workers), root),
            lambda: timed(runner_argv(*base, "--workers", "1"), root),
            reps,
        )
    speedup = serial.median / spread.median
    return Figure(
        name=f"--workers {workers} on {files * 2} CPU-bound tests",
        value=spread.median,
        baseline=serial.median,
        unit="s",
        target="faster than one process",
        met=speedup > 1.0,
        detail=f"speed-up {speedup:.2f}x on {os.cpu_count()} cores; "
        f"min {spread.minimum:.3f} vs {serial.minimum:.3f} s",
    )
