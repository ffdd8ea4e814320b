"""What a user asked for, as one frozen, typed value the CLI builds and the commands read.

Every default lives here, once. Paths are relative to the project root (the directory the
runner starts in), as the registry's are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.select import Criteria

DEFAULT_REGISTRY = Path("config/levels.yaml")
REGISTRY_ENV = "UTR_REGISTRY"
DEFAULT_DURATIONS = Path(".test_durations.json")
DEFAULT_HISTORY = Path(".runner/history.sqlite")
DEFAULT_MUTATION_DIR = Path(".runner/mutation")


@dataclass(frozen=True, kw_only=True)
class Narrowing:
    """What narrows a selection before it runs, in this order."""

    changed: str | None = None  # a git revision: only what a change since it touches
    shard: tuple[int, int] | None = None  # (K, N): shard K of N
    budget: float | None = None  # seconds: the most MRR that fits
    observe: bool = False  # with `changed`: run everything, measure what it would skip


@dataclass(frozen=True, kw_only=True)
class ReportPaths:
    """Where each report goes (None: not written)."""

    json: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None
    html: Path | None = None

    def chosen(self) -> dict[str, Path]:
        """The requested reports by format, in a fixed order."""
        paths = {"json": self.json, "junit": self.junit, "markdown": self.markdown}
        paths["html"] = self.html
        return {fmt: path for fmt, path in paths.items() if path is not None}


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """A run (or its plan): what to select, how to run it, what to write and record."""

    registry: Path = DEFAULT_REGISTRY
    criteria: Criteria = field(default_factory=Criteria)
    narrowing: Narrowing = field(default_factory=Narrowing)
    env: str | None = None  # an environment profile of the registry's
    gate: str | None = None
    timeout: float | None = None  # seconds for the whole run (default: the level's)
    workers: str | None = None  # a count or 'auto' (default: the level's)
    strict: bool = False  # unregistered tests are an error
    fail_fast: bool = False
    stop_after_failing_tier: bool = False
    detect_flakes: int | None = None  # rounds
    pytest_args: tuple[str, ...] = ()
    reports: ReportPaths = field(default_factory=ReportPaths)
    durations_file: Path = DEFAULT_DURATIONS
    record_durations: bool = True
    history_file: Path | None = DEFAULT_HISTORY  # None: the run is not recorded
    mutation: Path | None = None  # a `mutate --json` result, for MRR verified by mutation
    baseline: Path | None = None  # a JSON run report to compare with
    history_baseline: bool = True  # without `baseline`: compare with the last run on record
    verbosity: int = 0  # -1: no live output, 0: entries and failing tests, 1: every test


@dataclass(frozen=True, kw_only=True)
class MergeRequest:
    """Shard reports to combine into one run."""

    reports: tuple[Path, ...]
    registry: Path = DEFAULT_REGISTRY
    gate: str | None = None
    outputs: ReportPaths = field(default_factory=ReportPaths)
    allow_missing_shards: bool = False


@dataclass(frozen=True, kw_only=True)
class MutateRequest:
    """Mutation testing of the selected entries' `covers`."""

    registry: Path = DEFAULT_REGISTRY
    criteria: Criteria = field(default_factory=Criteria)
    sample: int | None = None  # mutants per entry (None: all of them)
    seed: int = 0
    time_budget: float | None = None  # seconds; what is left waits for the next run
    json: Path | None = None
    fail_under: float | None = None  # percent: an entry scoring less makes the exit 4
    session_dir: Path = DEFAULT_MUTATION_DIR
