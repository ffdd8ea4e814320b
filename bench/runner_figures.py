"""The runner's own costs: overhead over bare pytest, --list start-up, registry scale,
shard balance and the parent's memory."""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import (
    REPO,
    Figure,
    bench_env,
    repeat,
    runner_argv,
    side_by_side,
    timed,
    write_registry,
)
from runner.model import Entry
from runner.planning import shard
from runner.registry.load import load_registry
from runner.select import Criteria, select

NO_STATE = ("--no-history", "--no-record-durations")


def make_project(root: Path, files: int, per_file: int) -> Path:
    tests = root / "tests"
    tests.mkdir(parents=True)
    body = "".join(f"def test_{i}():\n    assert {i} == {i}\n\n" for i in range(per_file))
    entries = []
    for f in range(files):
        (tests / f"test_m{f}.py").write_text(body)
        path = f"tests/test_m{f}.py"
        entries.append(
            {"id": f"m{f}", "tier": 1 + f % 3, "mrr": 100 * (f + 1), "level": "unit", "path": path}
        )
    write_registry(root, entries)
    return root


def overhead(reps: int, files: int = 20, per_file: int = 10) -> Figure:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(Path(tmp), files, per_file)
        # the baseline as written: `python -m pytest` with its defaults (the cache
        # provider on), as the runner's child runs it
        bare_argv = [sys.executable, "-m", "pytest", "tests"]
        runner, bare = side_by_side(
            lambda: timed(runner_argv("--registry", "levels.yaml", *NO_STATE), root),
            lambda: timed(bare_argv, root),
            reps,
        )
    extra_ms = 1000 * (runner.median - bare.median)
    return Figure(
        name=f"runner on {files * per_file} trivial tests",
        value=runner.median,
        baseline=bare.median,
        unit="s",
        target="<= +100 ms at the median",
        met=extra_ms <= 100,
        detail=f"min {runner.minimum:.3f} vs {bare.minimum:.3f} s; "
        f"+{extra_ms:.0f} ms at the median",
    )


def list_startup(reps: int) -> Figure:
    registry = str(REPO / "config/levels.yaml")
    listing, yaml_only = side_by_side(
        lambda: timed(runner_argv("--registry", registry, "--list"), REPO),
        lambda: timed([sys.executable, "-c", "import yaml"], REPO),
        reps,
    )
    ratio = listing.median / yaml_only.median
    return Figure(
        name="--list on the shipped registry",
        value=listing.median,
        baseline=yaml_only.median,
        unit="s",
        target="<= 2x `python -c 'import yaml'`",
        met=ratio <= 2.0,
        detail=f"min {listing.minimum:.3f} vs {yaml_only.minimum:.3f} s",
    )


def _big_registry(root: Path, entries: int) -> Path:
    (root / "tests").mkdir()
    (root / "tests/test_x.py").write_text("def test_x():\n    pass\n")
    tests: list[dict[str, object]] = [
        {"id": f"t{i}", "tier": 1, "mrr": i, "level": "unit", "path": "tests/test_x.py"}
        for i in range(entries)
    ]
    return write_registry(root, tests, timeout=60)


def registry_scale(reps: int, entries: int = 10_000) -> Figure:
    with tempfile.TemporaryDirectory() as tmp:
        path = _big_registry(Path(tmp), entries)

        def once() -> float:
            started = time.perf_counter()
            select(load_registry(path, path.parent), Criteria(patterns=("t1*",)))
            return time.perf_counter() - started

        sample = repeat(once, reps)
    return Figure(
        name=f"load + validate + select, {entries:,}-entry registry",
        value=sample.median,
        baseline=None,
        unit="s",
        target="< 0.5 s",
        met=sample.median < 0.5,
        detail=f"min {sample.minimum:.3f} s",
    )


def shard_balance(tests: int = 1000, shards: int = 4) -> Figure:
    rng = random.Random(2026)
    entries = [
        Entry(id=f"t{i}", name=f"t{i}", tier=1, mrr=1, level="unit", path="x") for i in range(tests)
    ]
    durations = {e.id: rng.lognormvariate(0, 1.2) for e in entries}
    loads = [sum(durations[e.id] for e in b) for b in shard.partition(entries, durations, shards)]
    ratio = max(loads) / min(loads)
    return Figure(
        name=f"shard balance, {tests:,} tests, {shards} shards",
        value=ratio,
        baseline=1.0,
        unit="max/min",
        target="<= 1.10",
        met=ratio <= 1.10,
        detail=f"shard loads {', '.join(f'{x:.0f}' for x in loads)} s",
    )


PEAK = (
    "import resource, sys; sys.argv = ['unified-test-runner', *sys.argv[1:]]; "
    "from runner.cli import main; code = main(); "
    "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
)
PYTEST_PEAK = (
    "import resource, sys, pytest; pytest.main(sys.argv[1:]); "
    "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
)


def _peak_kib(argv: list[str], cwd: Path) -> int:
    """Peak RSS of a process started by a small shell: Linux keeps a process's peak across
    exec, so a child forked straight from this (large) process would report our size."""
    proc = subprocess.run(
        ["sh", "-c", '"$@"', "sh", *argv],
        cwd=cwd,
        env=bench_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("PEAK"))
    return int(line.split()[1])


def parent_memory(files: int = 100, per_file: int = 100) -> Figure:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(Path(tmp), files, per_file)
        runner = _peak_kib(
            [sys.executable, "-c", PEAK, "--registry", "levels.yaml", *NO_STATE], root
        )
        bare = _peak_kib(
            [sys.executable, "-c", PYTEST_PEAK, "-q", "-p", "no:cacheprovider", "tests"], root
        )
    ratio = runner / bare
    return Figure(
        name=f"peak memory of the runner parent, {files * per_file:,} tests",
        value=runner / 1024,
        baseline=bare / 1024,
        unit="MiB",
        target="<= 1.2x bare pytest's",
        met=ratio <= 1.2,
        detail="the parent only; pytest runs in its child",
    )
