"""`init`: scaffold a registry from the tests pytest collects (tier and MRR to fill in)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from runner.errors import UsageError
from runner.supervisor.collect import collect_all


def init(output: Path, level: str, *, force: bool, paths: tuple[str, ...]) -> int:
    """Write a registry with one entry per collected test file, tier and MRR left to fill."""
    if output.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to overwrite it")
    nodeids = collect_all(Path.cwd(), paths)
    if not nodeids:
        raise UsageError("pytest collected no tests here: nothing to register")
    files: dict[str, int] = Counter(n.split("::")[0] for n in nodeids)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(_scaffold(files, level), encoding="utf-8")
    print(
        f"wrote {output}: {len(files)} entries for {len(nodeids)} tests; "
        "fill in tier, mrr and owner, then run `validate`"
    )
    return 0


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
