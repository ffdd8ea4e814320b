"""The mutation engine: cosmic-ray, used as a library.

cosmic-ray draws the mutants (its operators: comparisons, arithmetic, booleans, numbers,
keywords, exceptions, loops...), applies one to a file and puts the file back, and keeps a
session in SQLite (its WorkDB) so an interrupted run resumes where it stopped. What runs
against a mutant is the runner's business (runner.mutation.driver).

A line a person has judged equivalent (no test could tell the mutant from the original)
says so with cosmic-ray's own marker, `# pragma: no mutate`, and a reason beside it; its
mutants are counted as marked, never run, and left out of the scores.

A session is tied to the files and their contents: change the code and a new session
starts. A mutant is applied in place, as cosmic-ray does; the file's original text is kept
beside the session until it is back, so a run killed mid-mutant restores it next time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import UsageError


@dataclass(frozen=True, kw_only=True)
class Mutant:
    job_id: str
    path: str  # relative to the project root
    operator: str
    occurrence: int
    line: int
    marked: bool = False  # its line says `# pragma: no mutate`: judged equivalent


def _cosmic_ray() -> Any:
    try:
        import cosmic_ray.commands  # noqa: PLC0415 - only `mutate` needs it
        import cosmic_ray.tools.filters.pragma_no_mutate  # noqa: PLC0415
        import cosmic_ray.work_db  # noqa: PLC0415
        import cosmic_ray.work_item  # noqa: PLC0415
    except ImportError:
        raise UsageError(
            "mutate needs cosmic-ray: pip install 'unified-test-runner[mutation]'"
        ) from None
    return cosmic_ray


class Session:
    """The mutants of some files and the outcomes recorded so far, resumable."""

    def __init__(self, directory: Path, root: Path, files: list[str]) -> None:
        self.cr = _cosmic_ray()
        self.root = root
        directory.mkdir(parents=True, exist_ok=True)
        self.pending_file = directory / "applied.json"
        restore_interrupted(self.pending_file)
        self.path = directory / f"{_digest(root, files)}.sqlite"
        fresh = not self.path.exists()
        self.db = self.cr.work_db.WorkDB(str(self.path), self.cr.work_db.WorkDB.Mode.create)
        if fresh or self.db.num_work_items == 0:
            self.cr.commands.init([root / f for f in files], self.db, {})
            # once, as the mutants are made: the session is tied to the files' contents
            self.cr.tools.filters.pragma_no_mutate.PragmaNoMutateFilter().filter(self.db, None)
        self.marked = frozenset(
            job
            for job, result in self.db.results
            if result.worker_outcome == self.cr.work_item.WorkerOutcome.SKIPPED
        )

    def close(self) -> None:
        self.db.close()

    def mutants(self) -> list[Mutant]:
        """Every mutant (those marked equivalent say so), but those inside annotations a
        module never evaluates (under `from __future__ import annotations`): no test can
        tell them apart (mutmut does not mutate annotations either)."""
        found = []
        for item in self.db.work_items:
            (spec,) = item.mutations
            if in_lazy_annotation(Path(spec.module_path), tuple(spec.start_pos)):
                continue
            found.append(
                Mutant(
                    job_id=item.job_id,
                    path=Path(spec.module_path).relative_to(self.root).as_posix(),
                    operator=spec.operator_name,
                    occurrence=spec.occurrence,
                    line=spec.start_pos[0],
                    marked=item.job_id in self.marked,
                )
            )
        return sorted(found, key=lambda m: (m.path, m.line, m.operator, m.occurrence))

    def outcomes(self) -> dict[str, dict[str, Any]]:
        """job id -> {"entries": {entry id: outcome}, "diff": text}, for the mutants done."""
        done = {}
        for job_id, result in self.db.results:
            if job_id in self.marked:
                continue
            with contextlib.suppress(TypeError, ValueError):
                done[job_id] = {
                    "entries": json.loads(result.output or "{}"),
                    "diff": result.diff or "",
                }
        return done

    def record(self, mutant: Mutant, entries: dict[str, str], diff: str) -> None:
        outcome = self.cr.work_item.TestOutcome
        killed = any(o != "survived" for o in entries.values())
        result = self.cr.work_item.WorkResult(
            worker_outcome=self.cr.work_item.WorkerOutcome.NORMAL,
            output=json.dumps(entries),
            test_outcome=outcome.KILLED if killed else outcome.SURVIVED,
            diff=diff,
        )
        self.db.set_result(mutant.job_id, result)

    @contextlib.contextmanager
    def applied(self, mutant: Mutant) -> Iterator[str | None]:
        """The mutant in place for the block; yields its diff (None: nothing to mutate)."""
        from cosmic_ray.mutating import use_mutation  # noqa: PLC0415
        from cosmic_ray.plugins import get_operator  # noqa: PLC0415

        path = self.root / mutant.path
        original = path.read_text(encoding="utf-8")
        self.pending_file.write_text(json.dumps({"path": str(path), "text": original}))
        operator = get_operator(mutant.operator)()
        try:
            with use_mutation(path, operator, mutant.occurrence) as (before, after):
                yield None if after is None else _diff(before, after, mutant.path)
        finally:
            if path.read_text(encoding="utf-8") != original:
                path.write_text(original, encoding="utf-8")
            self.pending_file.unlink(missing_ok=True)


def in_lazy_annotation(path: Path, position: tuple[int, int]) -> bool:
    """Is (line, column) inside an annotation that `path` never evaluates?"""
    return any(start <= position < end for start, end in _lazy_annotations(path))


@functools.lru_cache(maxsize=256)
def _lazy_annotations(path: Path) -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    """The (start, end) positions of the annotations of a module that postpones them."""
    import ast  # noqa: PLC0415

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return ()
    postponed = any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__"
        and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )  # fmt: skip
    if not postponed:
        return ()
    return tuple(
        ((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0))
        for a in _annotations(tree)
    )


def _annotations(tree: Any) -> Iterator[Any]:
    import ast  # noqa: PLC0415

    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            yield node.annotation
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            yield node.returns


def _diff(before: str, after: str, name: str) -> str:
    import difflib  # noqa: PLC0415

    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, f"a/{name}", f"b/{name}", n=1))


def restore_interrupted(pending: Path) -> str | None:
    """Put back a file a killed run left mutated; returns its path if there was one."""
    if not pending.exists():
        return None
    data = json.loads(pending.read_text(encoding="utf-8"))
    Path(data["path"]).write_text(data["text"], encoding="utf-8")
    pending.unlink()
    print(f"restored {data['path']}, left mutated by an interrupted run")
    return str(data["path"])


def sample(mutants: list[Mutant], size: int | None, seed: int) -> list[Mutant]:
    """A seeded random sample (the same one on every resumption), in file order."""
    if size is None or size >= len(mutants):
        return mutants
    chosen = set(random.Random(seed).sample(range(len(mutants)), size))
    return [m for i, m in enumerate(mutants) if i in chosen]


def _digest(root: Path, files: list[str]) -> str:
    """A session's name: the files it mutates and their contents."""
    sha = hashlib.sha256()
    for name in sorted(files):
        sha.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return sha.hexdigest()[:16]
