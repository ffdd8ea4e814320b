"""What the CLI's commands do, apart from parsing: plan, run, validate, report, merge,
history and init. Returns exit codes; raises RunnerError for usage problems."""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from runner.commands.plan import plan_dict, plan_lines
from runner.errors import RegistryError, RunBrokenError, UsageError
from runner.model import Registry
from runner.planning import durations
from runner.planning.narrow import narrow_for
from runner.select import ALL_LEVELS, Selection, level_timeout, run_order


def _expected(registry: Registry, selection: Selection, opts: dict[str, Any]) -> dict[str, float]:
    store = durations.load(registry.root / opts.get("durations_file", durations.DEFAULT_FILE))
    return durations.estimate(selection.runnable, store)


def print_plan(
    registry: Registry, selection: Selection, opts: dict[str, Any], as_json: bool
) -> None:
    expected = _expected(registry, selection, opts)
    narrowed = narrow_for(registry, selection, expected, opts)
    timeout = opts.get("timeout") or level_timeout(registry, selection.level)
    data = plan_dict(registry, narrowed.selection, timeout, expected)
    data.update(
        {
            "gate": opts.get("gate"),
            "notes": list(narrowed.notes),
            **narrowed.meta,
            "left_out": [r.entry_id for r in narrowed.left_out],
        }
    )
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for line in [*narrowed.notes, *plan_lines(registry, narrowed.selection, timeout, expected)]:
        print(line)


def run_command(registry: Registry, selection: Selection, opts: dict[str, Any]) -> int:
    from runner.commands.run import detect_flakes, execute  # noqa: PLC0415 - loads rich

    if opts.get("detect_flakes"):
        return detect_flakes(registry, selection, opts, int(opts["detect_flakes"]))
    return execute(registry, selection, opts)


def everything(registry: Registry) -> Selection:
    return Selection(
        level=ALL_LEVELS, levels=frozenset(registry.levels), entries=run_order(list(registry.tests))
    )


def validate_command(registry: Registry, strict: bool) -> int:
    """Collect every implemented entry: registry problems exit 2, a collection that itself
    broke (a conftest that raises, exits or stops the session) exits 5."""
    from runner.supervisor.run import RunOptions, run_selection  # noqa: PLC0415
    from runner.verdict import judge  # noqa: PLC0415

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
    outcome = judge(registry, result)
    if result.interrupted or outcome.broken:
        why = outcome.reasons[0].text if result.interrupted else outcome.broken[0]
        print(f"error: cannot validate {registry.path}: {why}", file=sys.stderr)
        return outcome.exit_code
    _print_valid(registry, selection, result)
    return 0


def _print_valid(registry: Registry, selection: Selection, result: Any) -> None:
    tests = sum(1 for e in result.entries for _ in e.tests)
    print(
        f"registry OK: {len(registry.tests)} entries ({len(selection.pending)} pending), "
        f"{tests} tests collected, {len(result.unregistered)} unregistered"
    )
    for nodeid in result.unregistered[:20]:
        print(f"  unregistered: {nodeid}")


def _outcome_from(paths: list[Path], opts: dict[str, Any], gate: str | None, merging: bool) -> Any:
    from runner.commands.merge import merge_runs  # noqa: PLC0415
    from runner.registry.load import load_registry  # noqa: PLC0415
    from runner.reports.reader import load_run, read_report  # noqa: PLC0415
    from runner.verdict import judge  # noqa: PLC0415

    registry = load_registry(opts["registry"])
    reports = [read_report(p) for p in paths]
    runs = [load_run(p, r) for p, r in zip(paths, reports, strict=True)]
    run = merge_runs(registry, runs, opts["allow_missing_shards"]) if merging else runs[0]
    unknown = sorted({e.entry_id for e in run.entries} - set(registry.by_id))
    if unknown:
        raise UsageError(f"the report names entries the registry lacks: {', '.join(unknown)}")
    args = reports[0]["run"].get("pytest_args", ())
    flaky_fails = bool(reports[0]["run"].get("detect_flakes"))
    return judge(registry, run, gate, tuple(str(a) for a in args), flaky_fails=flaky_fails)


def report_command(opts: dict[str, Any]) -> int:
    from runner.reports.reader import read_report  # noqa: PLC0415

    data = read_report(Path(opts["run_json"]))
    gate = (data.get("gate") or {}).get("name") if isinstance(data.get("gate"), dict) else None
    outcome = _outcome_from([opts["run_json"]], opts, gate, merging=False)
    _emit(outcome, opts["fmt"], opts.get("output"))
    return 0  # the rendering worked; the run's own verdict is in what was rendered


def merge_command(opts: dict[str, Any]) -> int:
    from runner.reports.console import make_console, render_summary  # noqa: PLC0415
    from runner.reports.files import report_paths, write_reports  # noqa: PLC0415
    from runner.verdict import final_exit  # noqa: PLC0415

    paths = report_paths(opts)
    outcome = _outcome_from(list(opts["reports"]), opts, opts.get("gate"), merging=True)
    render_summary(make_console(), outcome)
    return final_exit(outcome, write_reports(outcome, paths))


def _emit(outcome: Any, fmt: str, output: Path | None) -> None:
    from runner.files import write_text  # noqa: PLC0415
    from runner.reports.console import make_console, render_summary  # noqa: PLC0415
    from runner.reports.files import RENDERERS  # noqa: PLC0415

    if fmt == "text":
        if output is None:
            render_summary(make_console(), outcome)
            return
        from rich.console import Console  # noqa: PLC0415

        with output.open("w", encoding="utf-8") as handle:
            render_summary(Console(file=handle, no_color=True, width=140), outcome)
        return
    text = RENDERERS[fmt](outcome)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        write_text(output, text)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


def history_command(opts: dict[str, Any]) -> None:
    from runner.history import summary  # noqa: PLC0415
    from runner.summary import money  # noqa: PLC0415

    data = summary(Path(opts["history_file"]), opts["last"])  # UsageError if unreadable
    if opts["as_json"]:
        print(json.dumps(data, indent=2))
        return
    print("RUN  STARTED                    LEVEL         EXIT  PROTECTED      OF")
    for r in data["runs"]:
        print(
            f"{r['id']:<4} {r['started_at']:<26} {r['level']:<13} {r['exit_code']:<5} "
            f"{money(r['protected']):<14} {money(r['registered'])}"
        )
    for f in data["flakiest"]:
        print(
            f"flaky: {f['id']} (flaky in {f['flaky_runs']} of {f['runs']} runs, "
            f"{f['distinct_outcomes']} outcomes)"
        )
    for s in data["slowest"]:
        print(f"slow: {s['id']} mean {s['mean_s']} s, max {s['max_s']} s")


def init_command(opts: dict[str, Any]) -> int:
    """Write a registry with one entry per collected test file, tier and MRR left to fill."""
    output: Path = opts["output"]
    if output.exists() and not opts["force"]:
        raise UsageError(f"{output} exists; pass --force to overwrite it")
    nodeids = _collect(tuple(opts["paths"]))
    if not nodeids:
        raise UsageError("pytest collected no tests here: nothing to register")
    files: dict[str, int] = Counter(n.split("::")[0] for n in nodeids)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(_scaffold(files, opts["level"]), encoding="utf-8")
    print(
        f"wrote {output}: {len(files)} entries for {len(nodeids)} tests; "
        "fill in tier, mrr and owner, then run `validate`"
    )
    return 0


def _collect(paths: tuple[str, ...]) -> list[str]:
    """Every test pytest collects, from the plugin's event stream (an empty registry)."""
    from runner.child.protocol import make_spec  # noqa: PLC0415
    from runner.supervisor.events import EventLog  # noqa: PLC0415
    from runner.supervisor.process import ChildSpec, run_child  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="utr-init-") as tmp:
        work, log = Path(tmp), EventLog()
        spec = make_spec(root=str(Path.cwd()), events=str(work / "events.jsonl"), entries=[])
        (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        child = ChildSpec(
            root=Path.cwd(),
            targets=paths,
            extra_args=("--collect-only",),
            spec_file=work / "spec.json",
            events_file=work / "events.jsonl",
            log_file=work / "pytest.log",
            timeout=300,
        )
        run_child(child, log.apply, log.done)
    if not log.session_finished:
        raise RunBrokenError("pytest could not collect the tests here (its session broke)")
    return log.unregistered


SCAFFOLD_HEAD = """\
# Registry scaffolded by `unified-test-runner init`.
# For each entry set tier (1 = critical revenue .. 3), mrr (dollars of monthly
# recurring revenue the test protects) and owner; then run `validate`.
version: 1
default_level: {level}
levels:
  {level}: {{description: "all registered tests", timeout: 900}}
tiers:
  1: {{name: "Critical revenue protection", retries: 0}}
  2: {{name: "System stability", retries: 1}}
  3: {{name: "Operational excellence", retries: 2}}
tests:
"""
SCAFFOLD_ENTRY = """\
  - id: {entry_id}   # {count} tests
    path: {path}
    tier: 3          # TODO
    mrr: 0           # TODO: dollars
    level: {level}
    owner: unowned   # TODO
"""


def _scaffold(files: dict[str, int], level: str) -> str:
    used: defaultdict[str, int] = defaultdict(int)
    parts = [SCAFFOLD_HEAD.format(level=level)]
    for path, count in sorted(files.items()):
        slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(path).stem.removeprefix("test_")).strip("-")
        slug = slug or "tests"
        used[slug] += 1
        entry_id = slug if used[slug] == 1 else f"{slug}-{used[slug]}"
        parts.append(SCAFFOLD_ENTRY.format(entry_id=entry_id, count=count, path=path, level=level))
    return "".join(parts)
