"""The command line: the only module that imports click and owns the console."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click

from runner import __version__
from runner.errors import ExitCode, RunnerError
from runner.model import Registry
from runner.plan import plan_dict, plan_lines
from runner.registry import load_registry
from runner.select import Criteria, Selection, level_timeout, select

DEFAULT_REGISTRY = "config/levels.yaml"
REGISTRY_ENV = "UTR_REGISTRY"


class DefaultGroup(click.Group):
    """`unified-test-runner --level x` means `unified-test-runner run --level x`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "--version")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


registry_option = click.option(
    "--registry",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=REGISTRY_ENV,
    default=DEFAULT_REGISTRY,
    show_default=True,
    help=f"The YAML registry (also ${REGISTRY_ENV}); paths in it are relative to the cwd.",
)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unified-test-runner")
def cli() -> None:
    """Run revenue-critical pytest suites by level and tier; report the MRR they protect.

    With no command, `run` is assumed.
    """


@cli.command(context_settings={"ignore_unknown_options": False})
@registry_option
@click.option("--level", help="Level to run (levels include others); 'all' for every level.")
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    metavar="GLOB",
    help="Glob on id, name, file name or node id (repeatable; any may match).",
)
@click.option("--tier", "tiers", multiple=True, type=int, help="Only this tier (repeatable).")
@click.option("--id", "ids", multiple=True, metavar="ID", help="Only this entry (repeatable).")
@click.option("--list", "list_only", is_flag=True, help="Print the plan and exit; run nothing.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the JSON run report here.",
)
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write JUnit XML here.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds for the whole run (default: the level's timeout).",
)
@click.option("--gate", help="Stage gate from the registry to evaluate after the run.")
@click.option("--strict", is_flag=True, help="Unregistered tests under suite roots are an error.")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def run(**opts: Any) -> None:
    """Run the selected tests (extra pytest arguments go after `--`)."""
    registry = load_registry(opts["registry"])
    selection = select(registry, _criteria(opts))
    if opts["gate"] is not None and opts["gate"] not in registry.gates:
        raise click.BadParameter(
            f"unknown gate {opts['gate']!r} "
            f"(defined: {', '.join(sorted(registry.gates)) or 'none'})"
        )
    if opts["list_only"]:
        _print_plan(registry, selection, opts["timeout"])
        return
    # rich and the run machinery load only when running: --list must start fast
    from runner.session import execute  # noqa: PLC0415

    raise SystemExit(execute(registry, selection, opts))


def _criteria(opts: dict[str, Any]) -> Criteria:
    return Criteria(
        level=opts["level"],
        patterns=tuple(opts["patterns"]),
        tiers=tuple(opts["tiers"]),
        ids=tuple(opts["ids"]),
    )


def _print_plan(registry: Registry, selection: Selection, timeout: float | None) -> None:
    for line in plan_lines(
        registry, selection, timeout or level_timeout(registry, selection.level)
    ):
        click.echo(line)


@cli.command()
@registry_option
@click.option("--level", help="Level whose plan to show (default: the registry's default).")
@click.option("--pattern", "patterns", multiple=True, metavar="GLOB", help="As for run.")
@click.option("--tier", "tiers", multiple=True, type=int, help="As for run.")
@click.option("--id", "ids", multiple=True, metavar="ID", help="As for run.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(**opts: Any) -> None:
    """Show what a selection would run, its MRR and its timeout; run nothing."""
    registry = load_registry(opts["registry"])
    selection = select(registry, _criteria(opts))
    if opts["as_json"]:
        timeout = level_timeout(registry, selection.level)
        click.echo(json.dumps(plan_dict(registry, selection, timeout), indent=2))
    else:
        _print_plan(registry, selection, None)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every RunnerError becomes one line on stderr and its exit code."""
    signal.signal(signal.SIGTERM, _sigterm)
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
