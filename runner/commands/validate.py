"""`validate`: collect every implemented entry and check the registry against it."""

from __future__ import annotations

import sys

from runner.errors import ExitCode, RegistryError
from runner.model import Registry
from runner.reports.tables import unregistered_lines
from runner.results import RunResult
from runner.select import ALL_LEVELS, Selection, run_order
from runner.supervisor.run import RunOptions, run_selection
from runner.verdict import exit_code, judge


def everything(registry: Registry) -> Selection:
    return Selection(
        level=ALL_LEVELS, levels=frozenset(registry.levels), entries=run_order(list(registry.tests))
    )


def validate(registry: Registry, *, strict: bool) -> int:
    """Registry problems exit 2; a collection that itself breaks (a conftest that raises,
    exits or stops the session) exits 5."""
    selection = everything(registry)
    if not selection.runnable:
        print(f"registry OK: {len(registry.tests)} entries, all pending")
        return 0
    options = RunOptions(extra_args=("--collect-only", "-q"), strict=strict, retry=False)
    result = run_selection(registry, selection, options)
    broken = [e for e in result.entries if e.collect_error]
    if broken:
        raise RegistryError(
            f"a registered test does not collect: {broken[0].entry_id}: {broken[0].note}",
            file=str(registry.path),
        )
    # --collect-only runs no test, so every entry is unverified (3): anything else is not
    fatal = [r for r in judge(registry, result).reasons if r.code != ExitCode.EMPTY_SELECTION]
    if fatal:
        print(f"error: cannot validate {registry.path}: {fatal[0].text}", file=sys.stderr)
        return exit_code(tuple(fatal))
    _print_valid(registry, selection, result)
    return 0


def _print_valid(registry: Registry, selection: Selection, result: RunResult) -> None:
    tests = sum(1 for e in result.entries for _ in e.tests)
    print(
        f"registry OK: {len(registry.tests)} entries ({len(selection.pending)} pending), "
        f"{tests} pytest tests collected, {len(result.unregistered)} unregistered"
    )
    for line in unregistered_lines(result.unregistered, shown=20):
        print(f"  unregistered: {line}")
