"""In-memory registries for pure-function tests."""

from __future__ import annotations

from pathlib import Path

from runner.model import Entry, Gate, Level, Registry, Tier


def make_entry(
    entry_id: str,
    *,
    tier: int = 1,
    mrr: float = 1000,
    level: str = "unit",
    path: str | None = None,
    status: str = "implemented",
    owner: str = "team",
) -> Entry:
    return Entry(
        id=entry_id,
        name=entry_id.replace("-", " ").title(),
        tier=tier,
        mrr=mrr,
        level=level,
        path=path or f"tests/test_{entry_id.replace('-', '_')}.py",
        status=status,
        owner=owner,
    )


def make_registry(*entries: Entry, gates: dict[str, Gate] | None = None) -> Registry:
    return Registry(
        path=Path("levels.yaml"),
        root=Path("/project"),
        version=1,
        default_level="unit",
        levels={
            "unit": Level(name="unit", description="", timeout=60),
            "full": Level(name="full", description="", timeout=300, includes=("unit",)),
            "nightly": Level(name="nightly", description="", timeout=900, includes=("full",)),
        },
        tiers={
            1: Tier(number=1, name="Critical"),
            2: Tier(number=2, name="Stable", retries=1),
            3: Tier(number=3, name="Ops", retries=2),
        },
        gates=gates or {},
        tests=entries,
    )
