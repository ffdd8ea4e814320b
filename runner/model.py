"""The registry as frozen data: what each test is worth and how it is run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path

IMPLEMENTED = "implemented"
PENDING = "pending"


@dataclass(frozen=True, kw_only=True)
class Level:
    name: str
    description: str
    timeout: float
    includes: tuple[str, ...] = ()
    workers: str | None = None  # the default --workers for this level


@dataclass(frozen=True, kw_only=True)
class Tier:
    number: int
    name: str
    retries: int = 0


@dataclass(frozen=True, kw_only=True)
class Gate:
    """A stage gate: conditions a finished run must meet for CI to go on."""

    name: str
    require_tiers: tuple[int, ...] = ()
    require_all: bool = False
    min_protected_percent: float | None = None
    min_protected_mrr: float | None = None
    max_quarantined_mrr: float | None = None  # the most MRR a run may carry quarantined
    quarantine_tiers: tuple[int, ...] = (2, 3)  # tiers whose quarantines this gate honours


MUTED = "muted"  # runs and is reported, cannot fail the run
SKIPPED = "skipped"  # does not run


@dataclass(frozen=True, kw_only=True)
class Quarantine:
    """A known-bad entry (or some of its pytest tests) carried knowingly, until a date."""

    mode: str  # MUTED or SKIPPED
    owner: str
    reason: str
    ticket: str
    until: date  # the last day it holds
    tests: tuple[str, ...] = ()  # node ids (a prefix takes every parameter); () = the entry

    def describe(self) -> str:
        until = self.until.isoformat()
        return f"{self.mode} until {until} ({self.ticket}, {self.owner}): {self.reason}"


@dataclass(frozen=True, kw_only=True)
class Environment:
    """Where the suites run: `variables` for their environment (values may be `${NAME}`,
    read from the runner's environment) and `secrets`, names that must come from it."""

    name: str
    description: str = ""
    variables: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One registered revenue-critical test (a file, directory or node id)."""

    id: str
    name: str
    tier: int
    mrr: float
    level: str
    path: str
    status: str = IMPLEMENTED
    owner: str = "unowned"
    group: str = ""
    covers: tuple[str, ...] = ()
    # environments where skipped tests are expected ("*": every one): a partial run passes
    allow_skips: tuple[str, ...] = ()
    quarantine: Quarantine | None = None
    line: int = 0

    @property
    def file_part(self) -> str:
        return self.path.split("::", 1)[0]

    @property
    def pending(self) -> bool:
        return self.status == PENDING

    def skips_allowed(self, environment: str | None) -> bool:
        return "*" in self.allow_skips or (environment or "local") in self.allow_skips


@dataclass(frozen=True, kw_only=True)
class ChangePolicy:
    """The registry's `changed:` section: the safety nets of `--changed REF`."""

    always_full: tuple[str, ...] = ()  # .gitignore globs: a change to one runs everything
    never_skip: tuple[str, ...] = ()  # entry ids that run whatever changed
    never_skip_tiers: tuple[int, ...] = ()  # tiers whose entries run whatever changed


@dataclass(frozen=True, kw_only=True)
class Registry:
    path: Path
    root: Path
    version: int
    default_level: str
    levels: dict[str, Level]
    tiers: dict[int, Tier]
    gates: dict[str, Gate] = field(default_factory=dict)
    tests: tuple[Entry, ...] = ()
    suite_roots: tuple[str, ...] = ()
    environments: dict[str, Environment] = field(default_factory=dict)
    changed: ChangePolicy = field(default_factory=ChangePolicy)

    @cached_property
    def by_id(self) -> dict[str, Entry]:
        return {e.id: e for e in self.tests}

    def entry(self, entry_id: str) -> Entry:
        return self.by_id[entry_id]

    def total_mrr(self, tier: int | None = None) -> float:
        return sum(e.mrr for e in self.tests if tier is None or e.tier == tier)
