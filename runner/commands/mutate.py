"""`mutate`: mutation testing scoped by the registry. Each entry's mutants are drawn from
the files its `covers` claim; each mutant runs only the entries that cover its file,
through the runner; each entry is scored by the share of its mutants it kills."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runner import signals
from runner.errors import BaselineFailedError, ExitCode, UsageError
from runner.model import Entry, Registry
from runner.mutation.covers import covered_files
from runner.mutation.driver import trial
from runner.mutation.engine import Mutant, Session, sample
from runner.mutation.score import KILLED, SURVIVED, TIMED_OUT, EntryScore, Survivor
from runner.registry.load import load_registry
from runner.request import MutateRequest
from runner.select import select

TIMEOUT_FACTOR, TIMEOUT_SLACK = 3.0, 10.0  # a mutant's run may take this much longer


@dataclass(frozen=True, kw_only=True)
class Plan:
    registry: Registry
    entries: tuple[Entry, ...]
    files: dict[str, list[str]]  # entry id -> the files it covers
    chosen: dict[str, list[Mutant]]  # entry id -> its mutants in this run (maybe a sample)
    totals: dict[str, int]  # entry id -> how many mutants its files have (marked left out)
    marked: dict[str, int]  # entry id -> its mutants marked equivalent (`# pragma: no mutate`)

    def covering(self, mutant: Mutant) -> list[str]:
        return [e.id for e in self.entries if mutant.path in self.files[e.id]]


def mutate(request: MutateRequest) -> int:
    registry = load_registry(request.registry)
    entries = tuple(e for e in select(registry, request.criteria).runnable)
    files = covered_files(registry, entries)
    if not any(files.values()):
        raise UsageError("no selected entry covers a Python file: give the entries `covers`")
    session = Session(registry.root / request.session_dir, registry.root, _union(files))
    try:
        plan = _plan(registry, entries, files, session.mutants(), request)
        code = _run(plan, session, request)
        scores = score_entries(plan, session.outcomes())
    finally:
        session.close()
    from runner.reports.mutation import render, write_json  # noqa: PLC0415 - loads rich

    render(scores, plan.registry)
    if request.json is not None:
        write_json(request.json, scores, _meta(request, session))
    return code if code else _verdict(scores, request.fail_under)


def _union(files: dict[str, list[str]]) -> list[str]:
    return sorted({f for names in files.values() for f in names})


def _plan(
    registry: Registry,
    entries: tuple[Entry, ...],
    files: dict[str, list[str]],
    mutants: list[Mutant],
    request: MutateRequest,
) -> Plan:
    """Each entry's mutants, or a seeded sample of them per entry."""
    chosen, totals, marked = {}, {}, {}
    for entry in entries:
        own = [m for m in mutants if m.path in files[entry.id]]
        live = [m for m in own if not m.marked]
        seed = request.seed ^ zlib.crc32(entry.id.encode())  # per entry, the same each time
        chosen[entry.id], totals[entry.id] = sample(live, request.sample, seed), len(live)
        marked[entry.id] = len(own) - len(live)
    return Plan(
        registry=registry, entries=entries, files=files, chosen=chosen, totals=totals, marked=marked
    )


def _run(plan: Plan, session: Session, request: MutateRequest) -> int:
    """The mutants not done yet, within the time budget; 0, or a stop signal's code."""
    done = session.outcomes()
    todo = list(
        {m.job_id: m for ms in plan.chosen.values() for m in ms if m.job_id not in done}.values()
    )
    todo.sort(key=lambda m: (m.path, m.line, m.operator, m.occurrence))
    print(f"mutate: {len(todo)} mutants to run ({len(done)} done before), session {session.path}")
    if not todo:
        return 0
    budgets = _baseline(plan)
    started = time.monotonic()
    for number, mutant in enumerate(todo, start=1):
        if request.time_budget is not None and time.monotonic() - started > request.time_budget:
            print(f"time budget spent: {len(todo) - number + 1} mutants left; run again to go on")
            break
        if not _one(plan, session, mutant, budgets, f"[{number}/{len(todo)}]"):
            return signals.exit_code(signals.requested() or "SIGINT")
    return 0


def _baseline(plan: Plan) -> dict[str, float]:
    """Every entry must pass with no mutant in place; returns each entry's seconds."""
    ids = [e.id for e in plan.entries if plan.chosen[e.id]]
    timeout = max(plan.registry.levels[e.level].timeout for e in plan.entries)
    print(f"baseline: {len(ids)} entries without mutants ...", flush=True)
    result = trial(plan.registry.root, plan.registry.path, ids, timeout)
    failing = sorted(i for i, o in result.outcomes.items() if o != SURVIVED)
    if result.stopped:
        raise UsageError("stopped during the baseline run: nothing was mutated")
    if failing:
        raise BaselineFailedError(
            f"the entries must pass before mutants can be judged; failing: {', '.join(failing)}"
        )
    print(f"baseline: passed in {result.seconds:.1f} s")
    return result.durations


def _one(plan: Plan, session: Session, mutant: Mutant, budgets: dict[str, float], tag: str) -> bool:
    """Run one mutant against its entries and record it; False when a stop signal came."""
    ids = plan.covering(mutant)
    timeout = TIMEOUT_FACTOR * sum(budgets.get(i, 1.0) for i in ids) + TIMEOUT_SLACK
    with session.applied(mutant) as diff:
        if diff is None:
            session.record(mutant, dict.fromkeys(ids, KILLED), "")  # nothing changed: no mutant
            return True
        result = trial(plan.registry.root, plan.registry.path, ids, timeout)
    if result.stopped and signals.requested():
        return False
    session.record(mutant, result.outcomes, diff)
    print(
        f"{tag} {mutant.path}:{mutant.line} {mutant.operator} -> {_said(result.outcomes)} "
        f"({result.seconds:.1f} s)",
        flush=True,
    )
    return True


def _said(outcomes: dict[str, str]) -> str:
    killers = [i for i, o in outcomes.items() if o != SURVIVED]
    survivors = [i for i, o in outcomes.items() if o == SURVIVED]
    parts = [f"killed by {', '.join(killers)}"] if killers else []
    return "; ".join(parts + ([f"survived {', '.join(survivors)}"] if survivors else []))


def score_entries(plan: Plan, done: dict[str, dict[str, Any]]) -> list[EntryScore]:
    return [_score(plan, entry, done) for entry in plan.entries]


def _score(plan: Plan, entry: Entry, done: dict[str, dict[str, Any]]) -> EntryScore:
    """An entry's score over its chosen mutants that have an outcome for it."""
    mine = [
        (m, done[m.job_id]["entries"][entry.id])
        for m in plan.chosen[entry.id]
        if m.job_id in done and entry.id in done[m.job_id]["entries"]
    ]
    survivors = tuple(_survivor(m, done[m.job_id]["diff"]) for m, o in mine if o == SURVIVED)
    return EntryScore(
        entry_id=entry.id,
        mrr=entry.mrr,
        mutants=plan.totals[entry.id],
        marked=plan.marked[entry.id],
        killed=len(mine) - len(survivors),
        survived=len(survivors),
        timed_out=sum(o == TIMED_OUT for _, o in mine),
        survivors=survivors,
    )


def _survivor(mutant: Mutant, diff: str) -> Survivor:
    return Survivor(
        job_id=mutant.job_id,
        path=mutant.path,
        line=mutant.line,
        operator=mutant.operator,
        diff=diff,
    )


def _verdict(scores: list[EntryScore], fail_under: float | None) -> int:
    if fail_under is None:
        return 0
    low = [s for s in scores if s.score is not None and 100 * s.score < fail_under]
    for s in low:
        print(f"below {fail_under:g}%: {s.entry_id} scores {100 * (s.score or 0):.1f}%")
    return int(ExitCode.GATE_FAILED) if low else 0


def _meta(request: MutateRequest, session: Session) -> dict[str, Any]:
    return {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "registry": str(request.registry),
        "sample": request.sample,
        "seed": request.seed,
        "session": str(session.path),
        "engine": "cosmic-ray",
    }
