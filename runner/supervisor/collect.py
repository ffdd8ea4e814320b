"""Everything pytest collects in a project, with no registry to map it to (for `init`)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runner.child.protocol import make_spec
from runner.errors import RunBrokenError
from runner.supervisor.events import EventLog
from runner.supervisor.process import ChildSpec, run_child


@dataclass(frozen=True, kw_only=True)
class Inventory:
    """The project's tests: every one pytest collects, and those its own options (addopts,
    a conftest, a plugin) leave to run."""

    collected: tuple[str, ...]
    run: frozenset[str]


def collect_all(root: Path, paths: tuple[str, ...]) -> Inventory:
    """Every test pytest collects in `root` (or `paths` there), in order, and what runs."""
    with tempfile.TemporaryDirectory(prefix="utr-collect-") as tmp:
        work, log = Path(tmp), EventLog()
        spec = make_spec(
            root=str(root), events=str(work / "events.jsonl"), entries=[], inventory=True
        )
        (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        child = ChildSpec(
            root=root,
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
    return Inventory(collected=tuple(log.unregistered), run=frozenset(log.tests))
