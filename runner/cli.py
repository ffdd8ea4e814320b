"""The command line: the only module that imports click and owns the console."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from runner import __version__
from runner.errors import ExitCode, RunnerError
from runner.files import check_distinct
from runner.registry.environments import resolve
from runner.registry.load import load_registry
from runner.select import Criteria, select
from runner.supervisor.workers import parse_workers

DEFAULT_REGISTRY = "config/levels.yaml"
REGISTRY_ENV = "UTR_REGISTRY"
Deco = Callable[[Callable[..., Any]], Callable[..., Any]]
FILE = click.Path(path_type=Path, dir_okay=False)


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
        "--env",
        metavar="NAME",
        help="Environment profile from the registry's `environments` (default: launch locally).",
    ),
    click.option("--gate", help="Stage gate from the registry to evaluate after the run."),
    click.option(
        "--durations-file",
        default=".test_durations.json",
        show_default=True,
        help="Recorded durations (read for --shard/--budget, updated by runs).",
    ),
)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unified-test-runner")
def cli() -> None:
    """Run revenue-critical pytest suites by level and tier; report the MRR they protect.

    With no command, `run` is assumed.
    """


@cli.command()
@selection_options
@click.option("--list", "list_only", is_flag=True, help="Print the plan and exit; run nothing.")
@click.option("--json", "json_path", type=FILE, help="Write the JSON run report here.")
@click.option("--junit", "junit_path", type=FILE, help="Write JUnit XML here.")
@click.option(
    "--markdown",
    "markdown_path",
    type=FILE,
    help="Write a Markdown summary here ($GITHUB_STEP_SUMMARY is used when set).",
)
@click.option("--html", "html_path", type=FILE, help="Write a self-contained HTML report here.")
@seconds_option("--timeout", "Seconds for the whole run (default: the level's timeout).")
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
    default=".runner/history.sqlite",
    show_default=True,
    help="Where runs are recorded for `history`.",
)
@click.option(
    "--no-history",
    "history",
    flag_value=False,
    default=True,
    help="Do not record this run in the history.",
)
@click.option(
    "--no-record-durations",
    "record_durations",
    flag_value=False,
    default=True,
    help="Do not update the durations file.",
)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def run(**opts: Any) -> None:
    """Run the selected tests (extra pytest arguments go after `--`)."""
    registry, selection = _select(opts)
    parse_workers(opts["workers"])  # a bad value is a usage error before anything starts
    check_distinct(
        (f"--{fmt}", opts[f"{fmt}_path"]) for fmt in ("json", "junit", "markdown", "html")
    )
    if opts["list_only"]:
        from runner.commands.misc import print_plan  # noqa: PLC0415 - rich stays unloaded

        print_plan(registry, selection, opts, as_json=False)
        return
    # rich and the run machinery load only when running: --list must start fast
    from runner.commands.misc import run_command  # noqa: PLC0415

    raise SystemExit(run_command(registry, selection, opts))


def _select(opts: dict[str, Any]) -> Any:
    registry = load_registry(opts["registry"])
    selection = select(
        registry,
        Criteria(
            level=opts["level"],
            patterns=tuple(opts["patterns"]),
            tiers=tuple(opts["tiers"]),
            ids=tuple(opts["ids"]),
        ),
    )
    if opts.get("env") is not None:
        resolve(registry, opts["env"])  # an unknown profile or a missing secret stops here
    gate = opts.get("gate")
    if gate is not None and gate not in registry.gates:
        raise click.BadParameter(
            f"unknown gate {gate!r} (defined: {', '.join(sorted(registry.gates)) or 'none'})"
        )
    return registry, selection


@cli.command()
@selection_options
@seconds_option("--timeout", "As for run.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(**opts: Any) -> None:
    """Show what a selection would run: tests, MRR, expected time; run nothing."""
    from runner.commands.misc import print_plan  # noqa: PLC0415

    registry, selection = _select(opts)
    print_plan(registry, selection, opts, as_json=opts["as_json"])


@cli.command()
@registry_option
@click.option("--strict", is_flag=True, help="Unregistered tests are an error too.")
def validate(**opts: Any) -> None:
    """Check the registry against the collected tests; exit 0, or 2 with the problem."""
    from runner.commands.misc import validate_command  # noqa: PLC0415

    raise SystemExit(validate_command(load_registry(opts["registry"]), strict=opts["strict"]))


@cli.command()
@click.argument("run_json", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@registry_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit", "markdown", "html"]),
    default="text",
    show_default=True,
)
@click.option("--output", "-o", type=FILE, help="Write here instead of standard output.")
def report(**opts: Any) -> None:
    """Re-render a saved JSON run report in any format."""
    from runner.commands.misc import report_command  # noqa: PLC0415

    raise SystemExit(report_command(opts))


@cli.command()
@click.argument(
    "reports", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True)
)
@registry_option
@click.option("--gate", help="Stage gate to evaluate on the merged run.")
@click.option("--json", "json_path", type=FILE, help="Write the merged JSON report here.")
@click.option("--junit", "junit_path", type=FILE, help="Write merged JUnit XML here.")
@click.option("--markdown", "markdown_path", type=FILE, help="Write a Markdown summary here.")
@click.option("--html", "html_path", type=FILE, help="Write an HTML report here.")
@click.option(
    "--allow-missing-shards",
    is_flag=True,
    help="A missing shard's entries are unverified, not a broken run.",
)
def merge(**opts: Any) -> None:
    """Combine shard reports into one run, one summary and one gate verdict."""
    from runner.commands.misc import merge_command  # noqa: PLC0415

    raise SystemExit(merge_command(opts))


@cli.command(name="history")
@click.option("--history-file", default=".runner/history.sqlite", show_default=True)
@click.option("--last", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def history_cmd(**opts: Any) -> None:
    """Protected MRR per run over time; the flakiest and the slowest tests."""
    from runner.commands.misc import history_command  # noqa: PLC0415

    history_command(opts)


@cli.command()
@click.option("--output", "-o", type=FILE, default=Path("config/levels.yaml"), show_default=True)
@click.option("--level", default="integration", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing registry.")
@click.argument("paths", nargs=-1)
def init(**opts: Any) -> None:
    """Scaffold a registry from the tests pytest collects (tier and MRR left to fill in)."""
    from runner.commands.misc import init_command  # noqa: PLC0415

    raise SystemExit(init_command(opts))


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
