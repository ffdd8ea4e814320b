from __future__ import annotations

import random
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.model import Entry
from runner.planning import budget, durations, shard
from runner.planning.narrow import narrow
from runner.request import Narrowing
from runner.results import EntryResult, Status, TestResult
from runner.select import Selection
from tests.runner.helpers import make_entry


def _entries(n: int, seed: int = 7) -> tuple[list[Entry], dict[str, float]]:
    rng = random.Random(seed)
    entries = [make_entry(f"e{i}", tier=1 + i % 3, mrr=rng.randint(1, 100) * 100) for i in range(n)]
    return entries, {e.id: rng.uniform(0.05, 20.0) for e in entries}


def test_partition_is_balanced_deterministic_and_never_empty() -> None:
    entries, times = _entries(1000)
    bins = shard.partition(entries, times, 4)
    loads = [sum(times[e.id] for e in b) for b in bins]
    assert max(loads) / min(loads) <= 1.10
    assert bins == shard.partition(list(reversed(entries)), times, 4)
    assert sorted(e.id for b in bins for e in b) == sorted(e.id for e in entries)
    few, few_times = _entries(5)
    assert all(shard.partition(few, few_times, 5))


@pytest.mark.parametrize("text", ["0/3", "4/3", "x/2", "2", "1/0"])
def test_bad_shard_specs_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        shard.parse_shard(text)


def test_shard_from_standard_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SHARD_INDEX", "0")
    monkeypatch.setenv("TEST_TOTAL_SHARDS", "3")
    assert shard.parse_shard(None) == (1, 3)
    assert shard.parse_shard("2/5") == (2, 5)


def test_budget_maximises_mrr_and_puts_tier_one_first() -> None:
    a = make_entry("a", tier=2, mrr=900)
    b = make_entry("b", tier=2, mrr=500)
    c = make_entry("c", tier=2, mrr=500)
    crit = make_entry("crit", tier=1, mrr=10)
    times = {"a": 10.0, "b": 5.0, "c": 5.0, "crit": 9.0}
    chosen, out = budget.choose([a, b, c], times, 10.0)
    assert {e.id for e in chosen} == {"b", "c"}  # 1000 beats 900 in the same 10 s
    chosen, _ = budget.choose([a, b, c, crit], times, 10.0)
    assert [e.id for e in chosen] == ["crit"]  # tier 1 first when tight
    assert [e.id for e in out] == ["a"]
    assert sum(times[e.id] for e in budget.choose([a, b, c], times, 12.0)[0]) <= 12.0


def test_durations_store_round_trip_and_median_fallback(tmp_path: Path) -> None:
    path = tmp_path / ".test_durations.json"
    durations.save(path, {"b": 2.0, "a": 1.0})
    assert path.read_text().splitlines()[1].strip().startswith('"a"')  # sorted: stable diffs
    merged = durations.merge(durations.load(path), {"b": 4.0, "c": 3.0})
    assert merged == {"a": 1.0, "b": 4.0, "c": 3.0}
    known = [make_entry("a"), make_entry("b"), make_entry("c"), make_entry("new")]
    assert durations.estimate(known, merged)["new"] == 3.0
    assert durations.load(tmp_path / "missing.json") == {}


def _test(entry_id: str, duration: float, worker: str = "") -> TestResult:
    return TestResult(
        nodeid=f"t::{entry_id}", entry_id=entry_id, status=Status.PASSED, duration=duration,
        worker=worker,
    )  # fmt: skip


def test_start_up_is_learned_from_what_a_run_spent_beyond_its_tests() -> None:
    one = [EntryResult(entry_id="a", status=Status.PASSED, tests=(_test("a", 3.0),))]
    assert durations.startup(4.5, one) == {durations.STARTUP: 1.5}
    two = [  # two xdist workers: 6 s of tests in 3.5 s of wall
        EntryResult(entry_id="a", status=Status.PASSED, tests=(_test("a", 3.0, "gw0"),)),
        EntryResult(entry_id="b", status=Status.PASSED, tests=(_test("b", 3.0, "gw1"),)),
    ]
    assert durations.startup(3.5, two) == {durations.STARTUP: 0.5}
    assert durations.startup(9.0, [EntryResult(entry_id="a", status=Status.NOT_RUN)]) == {}


def test_a_budget_pays_the_learned_start_up_first() -> None:
    a, b = make_entry("a", tier=2, mrr=100), make_entry("b", tier=2, mrr=90)
    selection = Selection(level="unit", levels=frozenset({"unit"}), entries=(a, b))
    expected = {"a": 2.0, "b": 2.0}
    plain = narrow(selection, expected, Narrowing(budget=5.0))
    assert [e.id for e in plain.selection.entries] == ["a", "b"]
    learned = narrow(selection, expected, Narrowing(budget=5.0), startup=1.5)
    assert [e.id for e in learned.selection.entries] == ["a"]
    assert "(1.5 s of it start-up, as learned)" in learned.notes[-1]
