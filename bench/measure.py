"""Timing helpers: repeat, keep min and median; run commands; figures as plain data."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, kw_only=True)
class Figure:
    """One row of the table: the measured value, its baseline, and the target."""

    name: str
    value: float
    baseline: float | None
    unit: str
    target: str
    met: bool
    detail: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


@dataclass(frozen=True, kw_only=True)
class Sample:
    minimum: float
    median: float


def repeat(action: Callable[[], float], times: int) -> Sample:
    """Run `action` (which returns seconds or any measure) `times` times."""
    values = [action() for _ in range(times)]
    return Sample(minimum=min(values), median=statistics.median(values))


def side_by_side(
    action: Callable[[], float], baseline: Callable[[], float], times: int
) -> tuple[Sample, Sample]:
    """Both, alternating run by run: a slow moment of the machine hits each alike."""
    pairs = [(action(), baseline()) for _ in range(times)]
    ours, theirs = [p[0] for p in pairs], [p[1] for p in pairs]
    return (
        Sample(minimum=min(ours), median=statistics.median(ours)),
        Sample(minimum=min(theirs), median=statistics.median(theirs)),
    )


def write_registry(root: Path, entries: list[dict[str, object]], timeout: float = 600) -> Path:
    """A one-level, three-tier registry with `entries` at root/levels.yaml."""
    registry = {
        "version": 1,
        "levels": {"unit": {"timeout": timeout}},
        "tiers": {1: {"name": "a"}, 2: {"name": "b"}, 3: {"name": "c"}},
        "tests": entries,
    }
    path = root / "levels.yaml"
    path.write_text(yaml.safe_dump(registry))
    return path


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Wall seconds of a command; it must succeed or fail the way the caller expects."""
    started = time.perf_counter()
    subprocess.run(
        argv,
        cwd=cwd,
        env=env or bench_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - started


def bench_env() -> dict[str, str]:
    """The same environment for a figure and its baseline: no third-party plugin autoload."""
    return {
        **os.environ,
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "NO_COLOR": "1",
        "PYTHONPATH": str(REPO),
    }


def runner_argv(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "unified_test_runner.py"), *args]
