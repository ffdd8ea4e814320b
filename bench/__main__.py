"""`python -m bench [--quick] [--out PATH] [--skip-integration]`: every figure, side by side
with its baseline in the same run, printed as a table and written as Markdown and JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

from bench import platform_figures as plat
from bench import runner_figures as rf
from bench import scale_figures as sc
from bench.measure import Figure


def figures(quick: bool, integration: bool) -> list[Figure]:
    reps = 1 if quick else 5
    rows = [
        rf.overhead(reps, *((2, 5) if quick else (20, 10))),
        rf.list_startup(reps),
        rf.registry_scale(reps, 200 if quick else 10_000),
        rf.shard_balance(100 if quick else 1000),
        rf.parent_memory(*((5, 5) if quick else (100, 100))),
        sc.workers_speedup(reps, *((2, 100_000) if quick else (8, 2_000_000))),
        plat.cold_start(1 if quick else 5),
        *plat.platform(2 if quick else 20, 5 if quick else 100),
    ]
    if integration:
        rows.append(plat.integration_level())
    return rows


def table(rows: list[Figure]) -> str:
    lines = [
        f"Measured on {platform.node()}: {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}",
        "",
        "| figure | value | baseline | ratio | target | met | notes |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for f in rows:
        base = f"{f.baseline:.3f} {f.unit}" if f.baseline is not None else "-"
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        lines.append(
            f"| {f.name} | {f.value:.3f} {f.unit} | {base} | {ratio} | {f.target} | "
            f"{'yes' if f.met else '**no**'} | {f.detail} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument(
        "--skip-integration",
        action="store_true",
        help="leave out the whole-integration-level figure (about a minute)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results.md"))
    args = parser.parse_args(argv)
    rows = figures(args.quick, not args.skip_integration)
    text = table(rows)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(
        json.dumps([{**dataclasses.asdict(f), "ratio": f.ratio} for f in rows], indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
