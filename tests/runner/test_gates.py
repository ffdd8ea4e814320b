from __future__ import annotations

from runner.gates import GateVerdict, evaluate_gate
from runner.model import Gate
from runner.results import EntryResult, Status
from runner.summary import summarize
from tests.runner.helpers import make_entry, make_registry

REGISTRY = make_registry(make_entry("a", tier=1, mrr=60), make_entry("b", tier=2, mrr=40))


def _verdict(gate: Gate, *statuses: Status) -> GateVerdict:
    results = [EntryResult(entry_id=i, status=s) for i, s in zip("ab", statuses, strict=False)]
    return evaluate_gate(gate, REGISTRY, results, summarize(REGISTRY, results))


def test_tier_gate_names_the_tests_that_did_not_pass() -> None:
    gate = Gate(name="pr", require_tiers=(1,))
    assert _verdict(gate, Status.PASSED, Status.FAILED).held
    verdict = _verdict(gate, Status.SKIPPED, Status.PASSED)
    assert not verdict.held
    assert "tier 1: 1 selected entries did not pass ($60 MRR): a (skipped)" in verdict.failures[0]


def test_percent_gate_says_how_far_short() -> None:
    gate = Gate(name="release", min_protected_percent=95)
    verdict = _verdict(gate, Status.PASSED, Status.SKIPPED)
    assert not verdict.held
    assert "60.0% of registered, below 95% (short by $35)" in verdict.failures[0]
    assert _verdict(gate, Status.PASSED, Status.FLAKY).held


def test_dollar_and_require_all_gates() -> None:
    assert _verdict(Gate(name="x", min_protected_mrr=50, require_all=True), Status.PASSED).held
    short = _verdict(Gate(name="y", min_protected_mrr=100), Status.PASSED, Status.NOT_RUN)
    assert short.failures == ("protected MRR is $60, below $100 (short by $40)",)
    strict = _verdict(Gate(name="z", require_all=True), Status.PASSED, Status.SKIPPED)
    assert strict.failures == ("require_all: 1 of 2 selected entries did not pass",)


def test_a_registry_without_mrr_is_not_100_percent_protected() -> None:
    """`init` scaffolds mrr 0 everywhere: $0 of $0 is not applicable, and a percent gate
    cannot hold on it."""
    zero = make_registry(make_entry("a", tier=1, mrr=0), make_entry("b", tier=2, mrr=0))
    results = [EntryResult(entry_id="a", status=Status.PASSED)]
    summary = summarize(zero, results)
    assert [row.coverage_text for row in (*summary.tiers, summary.total)] == ["n/a"] * 4
    verdict = evaluate_gate(Gate(name="release", min_protected_percent=95), zero, results, summary)
    assert verdict.failures == ("no MRR is registered: no share of it can be protected",)
