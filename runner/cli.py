"""The command line: parses it with click into one typed request per command, and turns
every RunnerError into one line on stderr and its exit code. Nothing past this module sees
click or an options dictionary."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import click

from runner import __version__
from runner.errors import ExitCode, RunnerError, UsageError
from runner.files import check_distinct
from runner.model import Registry
from runner.planning.shard import parse_shard
from runner.registry.environments import resolve
from runner.registry.load import load_registry
from runner.request import (
    DEFAULT_DURATIONS,
    DEFAULT_HISTORY,
    DEFAULT_REGISTRY,
    REGISTRY_ENV,
    MergeRequest,
    MutateRequest,
    Narrowing,
    ReportPaths,
    RunRequest,
)
from runner.select import Criteria, Selection, select
from runner.supervisor.workers import parse_workers

Deco = Callable[[Callable[..., Any]], Callable[..., Any]]
FILE = click.Path(path_type=Path, dir_okay=False)
EXISTING = click.Path(path_type=Path, dir_okay=False, exists=True)


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A positive, finite number of seconds: `nan` and `inf` compare as nothing useful."""
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise click.BadParameter(f"{value!r} is not a positive, finite number of seconds")
    return value


def seconds_option(name: str, help_text: str) -> Deco:
    return click.option(name, type=float, callback=_seconds, metavar="SECONDS", help=help_text)


class DefaultGroup(click.Group):
    """`unified-test-runner --level x` means `unified-test-runner run --level x`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in ("-h", "--help", "--version"):
            return super().parse_args(ctx, args)
        index = self._command_at(args)
        args = ["run", *args] if index is None else [args[index], *args[:index], *args[index + 1 :]]
        return super().parse_args(ctx, args)

    def _command_at(self, args: list[str]) -> int | None:
        """Where the command name is, skipping option values (`--registry x validate`)."""
        takes_value = {
            name
            for cmd in self.commands.values()
            for p in cmd.params
            if isinstance(p, click.Option) and not p.is_flag
            for name in p.opts
        }
        i = 0
        while i < len(args) and args[i] != "--":
            if args[i] in self.commands:
                return i
            i += 2 if args[i] in takes_value else 1
        return None


def _stack(*decorators: Deco) -> Deco:
    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


registry_option = click.option(
    "--registry",
    type=FILE,
    envvar=REGISTRY_ENV,
    default=DEFAULT_REGISTRY,
    show_default=True,
    help=f"The YAML registry (also ${REGISTRY_ENV}); paths in it are relative to the cwd.",
)
report_options = _stack(
    click.option("--json", "json_path", type=FILE, help="Write the JSON run report here."),
    click.option("--junit", "junit_path", type=FILE, help="Write JUnit XML here."),
    click.option(
        "--markdown",
        "markdown_path",
        type=FILE,
        help="Write a Markdown summary here ($GITHUB_STEP_SUMMARY is used when set).",
    ),
    click.option("--html", "html_path", type=FILE, help="Write a self-contained HTML report."),
)
selection_options = _stack(
    registry_option,
    click.option("--level", help="Level to run (levels include others); 'all' for every level."),
    click.option(
        "--pattern",
        "patterns",
        multiple=True,
        metavar="GLOB",
        help="Glob on id, name, file name or node id (repeatable; any may match).",
    ),
    click.option("--tier", "tiers", multiple=True, type=int, help="Only this tier (repeatable)."),
    click.option("--id", "ids", multiple=True, metavar="ID", help="Only this entry (repeatable)."),
    click.option(
        "--shard",
        metavar="K/N",
        help="Run shard K of N (least-duration split; else TEST_SHARD_INDEX and "
        "TEST_TOTAL_SHARDS).",
    ),
    seconds_option("--budget", "Run what protects the most MRR within this many seconds."),
    click.option(
        "--changed",
        metavar="REF",
        help="Only entries whose `covers` match files changed since REF (git diff REF...); "
        "entries without covers always run.",
    ),
    click.option(
        "--observe",
        is_flag=True,
        help="With --changed: run everything, and measure what the selection would miss.",
    ),
    click.option(
        "--env",
        metavar="NAME",
        help="Environment profile from the registry's `environments` (default: launch locally).",
    ),
    click.option("--gate", help="Stage gate from the registry to evaluate after the run."),
    click.option(
        "--durations-file",
        type=FILE,
        default=DEFAULT_DURATIONS,
        show_default=True,
        help="Recorded durations (read for --shard/--budget, updated by runs).",
    ),
    seconds_option("--timeout", "Seconds for the whole run (default: the level's timeout)."),
)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unified-test-runner")
def cli() -> None:
    """Run revenue-critical pytest suites by level and tier; report the MRR they protect.

    With no command, `run` is assumed.
    """


@cli.command()
@selection_options
@report_options
@click.option("--list", "list_only", is_flag=True, help="Print the plan and exit; run nothing.")
@click.option(
    "--workers",
    metavar="N|auto",
    help="Spread the tests over N processes with pytest-xdist ('auto': one per CPU core).",
)
@click.option("--strict", is_flag=True, help="Unregistered tests under suite roots are an error.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failing test.")
@click.option(
    "--stop-after-failing-tier",
    is_flag=True,
    help="Run tiers as stages; after a tier with a failure, skip the lower ones.",
)
@click.option(
    "--detect-flakes",
    type=click.IntRange(min=2),
    metavar="N",
    help="Run the selection N times and report tests with mixed outcomes.",
)
@click.option(
    "--history-file",
    type=FILE,
    default=DEFAULT_HISTORY,
    show_default=True,
    help="Where runs are recorded for `history`.",
)
@click.option("--no-history", is_flag=True, help="Do not record this run in the history.")
@click.option("-v", "--verbose", is_flag=True, help="A live line for every pytest test.")
@click.option("-q", "--quiet", is_flag=True, help="No live output; only the summary.")
@click.option("--no-record-durations", is_flag=True, help="Do not update the durations file.")
@click.option(
    "--mutation",
    type=EXISTING,
    metavar="RESULT.json",
    help="A `mutate --json` result: reports show the MRR verified by mutation.",
)
@click.option(
    "--baseline",
    type=EXISTING,
    metavar="RUN.json",
    help="Compare with this run report (default: the last run of the level on record).",
)
@click.option("--no-baseline", is_flag=True, help="Compare with no earlier run.")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def run(**opts: Any) -> None:
    """Run the selected tests (extra pytest arguments go after `--`)."""
    request = _run_request(opts)
    registry, selection = _select(request)
    parse_workers(request.workers)  # a bad value is a usage error before anything starts
    check_distinct((f"--{fmt}", path) for fmt, path in request.reports.chosen().items())
    if opts["list_only"]:
        from runner.commands.plan import print_plan  # noqa: PLC0415 - rich stays unloaded

        print_plan(registry, selection, request, as_json=False)
        return
    # rich and the run machinery load only when running: --list must start fast
    from runner.commands.run import run as run_command  # noqa: PLC0415

    raise SystemExit(run_command(registry, selection, request))


def _run_request(opts: dict[str, Any]) -> RunRequest:
    """The one place the command line's options are read (`plan` has a subset of them)."""
    return RunRequest(
        registry=opts["registry"],
        criteria=Criteria(
            level=opts["level"],
            patterns=tuple(opts["patterns"]),
            tiers=tuple(opts["tiers"]),
            ids=tuple(opts["ids"]),
        ),
        narrowing=_narrowing(opts),
        env=opts["env"],
        gate=opts["gate"],
        timeout=opts["timeout"],
        durations_file=opts["durations_file"],
        **_run_only(opts),
    )


def _narrowing(opts: dict[str, Any]) -> Narrowing:
    if opts["observe"] and opts["changed"] is None:
        raise UsageError("--observe measures --changed REF: give it a REF")
    return Narrowing(
        changed=opts["changed"],
        shard=parse_shard(opts["shard"]),
        budget=opts["budget"],
        observe=opts["observe"],
    )


def _run_only(opts: dict[str, Any]) -> dict[str, Any]:
    if "pytest_args" not in opts:  # `plan`
        return {}
    return {
        "workers": opts["workers"],
        "strict": opts["strict"],
        "fail_fast": opts["fail_fast"],
        "stop_after_failing_tier": opts["stop_after_failing_tier"],
        "detect_flakes": opts["detect_flakes"],
        "pytest_args": tuple(opts["pytest_args"]),
        "reports": _report_paths(opts),
        "record_durations": not opts["no_record_durations"],
        "history_file": None if opts["no_history"] else opts["history_file"],
        "mutation": opts["mutation"],
        "baseline": _baseline(opts),
        "history_baseline": not opts["no_baseline"],
        "verbosity": _verbosity(opts),
    }


def _baseline(opts: dict[str, Any]) -> Path | None:
    if opts["baseline"] and opts["no_baseline"]:
        raise UsageError("--baseline and --no-baseline contradict each other")
    return cast(Path | None, opts["baseline"])


def _verbosity(opts: dict[str, Any]) -> int:
    if opts["verbose"] and opts["quiet"]:
        raise UsageError("--verbose and --quiet contradict each other")
    return 1 if opts["verbose"] else -1 if opts["quiet"] else 0


def _report_paths(opts: dict[str, Any]) -> ReportPaths:
    return ReportPaths(
        json=opts["json_path"],
        junit=opts["junit_path"],
        markdown=opts["markdown_path"],
        html=opts["html_path"],
    )


def _select(request: RunRequest) -> tuple[Registry, Selection]:
    registry = load_registry(request.registry)
    selection = select(registry, request.criteria)
    if request.env is not None:
        resolve(registry, request.env)  # an unknown profile or a missing secret stops here
    if request.gate is not None and request.gate not in registry.gates:
        known = ", ".join(sorted(registry.gates)) or "none"
        raise UsageError(f"unknown gate {request.gate!r} (defined: {known})")
    return registry, selection


@cli.command()
@selection_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(**opts: Any) -> None:
    """Show what a selection would run: tests, MRR, expected time; run nothing."""
    from runner.commands.plan import print_plan  # noqa: PLC0415

    request = _run_request(opts)
    registry, selection = _select(request)
    print_plan(registry, selection, request, as_json=opts["as_json"])


@cli.command()
@registry_option
@click.option("--strict", is_flag=True, help="Unregistered tests are an error too.")
def validate(registry: Path, strict: bool) -> None:
    """Check the registry against the collected tests; exit 0, 2 (the registry) or 5."""
    from runner.commands.validate import validate as validate_command  # noqa: PLC0415

    raise SystemExit(validate_command(load_registry(registry), strict=strict))


@cli.command()
@click.argument("run_json", type=EXISTING)
@registry_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit", "markdown", "html"]),
    default="text",
    show_default=True,
)
@click.option("--output", "-o", type=FILE, help="Write here instead of standard output.")
def report(run_json: Path, registry: Path, fmt: str, output: Path | None) -> None:
    """Re-render a saved JSON run report in any format."""
    from runner.commands.report import report as report_command  # noqa: PLC0415

    raise SystemExit(report_command(run_json, registry, fmt, output))


@cli.command()
@click.argument("reports", nargs=-1, required=True, type=EXISTING)
@registry_option
@click.option("--gate", help="Stage gate to evaluate on the merged run.")
@report_options
@click.option(
    "--allow-missing-shards",
    is_flag=True,
    help="A missing shard's entries are unverified, not a broken run.",
)
def merge(**opts: Any) -> None:
    """Combine shard reports into one run, one summary and one gate verdict."""
    from runner.commands.merge import merge as merge_command  # noqa: PLC0415

    request = MergeRequest(
        reports=tuple(opts["reports"]),
        registry=opts["registry"],
        gate=opts["gate"],
        outputs=_report_paths(opts),
        allow_missing_shards=opts["allow_missing_shards"],
    )
    raise SystemExit(merge_command(request))


@cli.command()
@registry_option
@click.option("--level", help="Entries of this level (default: the registry's default).")
@click.option("--id", "ids", multiple=True, metavar="ID", help="Only this entry (repeatable).")
@click.option("--sample", type=click.IntRange(min=1), help="Mutants per entry, drawn at random.")
@click.option("--seed", type=int, default=0, show_default=True, help="For --sample.")
@seconds_option("--time-budget", "Stop starting mutants after this long (the rest waits).")
@click.option("--json", "json_path", type=FILE, help="Write the scores as JSON here.")
@click.option(
    "--fail-under",
    type=click.FloatRange(0, 100),
    metavar="PERCENT",
    help="Exit 4 if an entry scores below this.",
)
def mutate(**opts: Any) -> None:
    """Mutation testing of what each entry covers: its score and its survivors."""
    from runner.commands.mutate import mutate as mutate_command  # noqa: PLC0415

    request = MutateRequest(
        registry=opts["registry"],
        criteria=Criteria(level=opts["level"], ids=tuple(opts["ids"])),
        sample=opts["sample"],
        seed=opts["seed"],
        time_budget=opts["time_budget"],
        json=opts["json_path"],
        fail_under=opts["fail_under"],
    )
    raise SystemExit(mutate_command(request))


@cli.command(name="history")
@click.option("--history-file", type=FILE, default=DEFAULT_HISTORY, show_default=True)
@click.option("--last", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def history_cmd(history_file: Path, last: int, as_json: bool) -> None:
    """Protected MRR per run over time; the flakiest and the slowest tests."""
    from runner.commands.history import history  # noqa: PLC0415

    history(history_file, last, as_json=as_json)


@cli.command()
@click.option("--output", "-o", type=FILE, default=DEFAULT_REGISTRY, show_default=True)
@click.option("--level", default="integration", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing registry.")
@click.option(
    "--by",
    type=click.Choice(["file", "directory"]),
    default="file",
    show_default=True,
    help="One entry per test file, or per directory whose tests all run.",
)
@click.argument("paths", nargs=-1)
def init(output: Path, level: str, force: bool, by: str, paths: tuple[str, ...]) -> None:
    """Scaffold a registry from the tests pytest collects (tier and MRR left to fill in)."""
    from runner.commands.init import init as init_command  # noqa: PLC0415

    raise SystemExit(init_command(output, level, force=force, paths=paths, by=by))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every RunnerError becomes one line on stderr and its exit code."""
    try:
        cli.main(args=argv, prog_name="unified-test-runner", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else ExitCode.USAGE
    except RunnerError as exc:
        click.echo(f"error: {exc}", err=True)
        return int(exc.exit_code)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return int(ExitCode.USAGE)
    except (KeyboardInterrupt, click.Abort):
        click.echo("interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
