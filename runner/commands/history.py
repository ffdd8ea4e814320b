"""`history`: protected MRR per run over time, the flakiest and the slowest entries."""

from __future__ import annotations

import json
from pathlib import Path

from runner.history import summary
from runner.summary import money


def history(history_file: Path, last: int, *, as_json: bool) -> None:
    data = summary(history_file, last)  # a UsageError if it is not a readable history
    if as_json:
        print(json.dumps(data, indent=2))
        return
    print("RUN  STARTED                    LEVEL         EXIT  PROTECTED      OF")
    for r in data["runs"]:
        recall = r["recall"]  # a run of --changed --observe measured its selection
        print(
            f"{r['id']:<4} {r['started_at']:<26} {r['level']:<13} {r['exit_code']:<5} "
            f"{money(r['protected']):<14} {money(r['registered'])}"
            + (f"  --changed recall {recall:.0%}" if recall is not None else "")
        )
    for f in data["flakiest"]:
        print(
            f"flaky: {f['id']} (flaky in {f['flaky_runs']} of {f['runs']} runs, "
            f"{f['distinct_outcomes']} outcomes)"
        )
    for s in data["slowest"]:
        print(f"slow: {s['id']} mean {s['mean_s']} s, max {s['max_s']} s")
    for c in data["quarantine_candidates"]:
        print(
            f"quarantine candidate: {c['id']} ({' and '.join(c['outcomes'])} on commit "
            f"{c['commit'][:12]}, {c['runs']} runs)"
        )
