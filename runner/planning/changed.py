"""`--changed REF`: the entries a change touches, from `git diff` and each entry's `covers`.

An entry is touched when a changed file matches one of its `covers` globs (.gitignore
syntax, through pathspec) or is the entry's own test file or directory. An entry
without `covers` is always selected: nothing says what it protects, so it is safe to run.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from runner.errors import UsageError
from runner.model import ChangePolicy, Entry

if TYPE_CHECKING:
    import pathspec

GIT_TIMEOUT = 60.0


FORCE_FULL = "UTR_CHANGED_FULL"  # set (not "0"): `--changed` runs everything (CI, main)


@dataclass(frozen=True, kw_only=True)
class Change:
    """What changed since `ref`, as paths relative to the project root, and the registry's
    safety nets: why everything runs anyway (`full`), what never is skipped."""

    ref: str
    files: tuple[str, ...]
    full: str = ""  # why this change runs everything ("" when it does not)
    policy: ChangePolicy = field(default_factory=ChangePolicy)
    observe: bool = False  # run everything; measure what the selection would have skipped

    def guards(self, entry: Entry) -> bool:
        """Never skipped, whatever changed (`changed.never_skip`, `never_skip_tiers`)."""
        return entry.id in self.policy.never_skip or entry.tier in self.policy.never_skip_tiers

    def touches(self, entry: Entry) -> bool:
        own = PurePosixPath(entry.file_part)
        if any(f == str(own) or own in PurePosixPath(f).parents for f in self.files):
            return True
        spec = covers_spec(entry.covers)
        return any(spec.match_file(f) for f in self.files)


@functools.lru_cache(maxsize=4096)
def covers_spec(globs: tuple[str, ...]) -> pathspec.PathSpec[Any]:
    """An entry's `covers` globs as a matcher (.gitignore syntax)."""
    import pathspec  # noqa: PLC0415 - only --changed needs it; `--list` must start fast

    return pathspec.PathSpec.from_lines("gitignore", globs)


def changed_files(root: Path, ref: str) -> Change:
    """Files changed between the merge base of `ref` and HEAD, plus uncommitted work."""
    if not ref.strip() or ref.startswith("-"):
        raise UsageError(f"--changed needs a git revision, not {ref!r}")
    # --no-renames: a file moved away from an entry's covers touches it (both paths listed)
    committed = _git(root, "diff", "--name-only", "--no-renames", "--relative", f"{ref}...")
    working = _git(root, "diff", "--name-only", "--no-renames", "--relative", "HEAD")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard")
    files = sorted({*committed, *working, *untracked})
    return Change(ref=ref, files=tuple(files))


def with_policy(change: Change, policy: ChangePolicy, observe: bool) -> Change:
    """`change` with the registry's safety nets: a file matching `always_full`, or
    $UTR_CHANGED_FULL, runs everything (and says why)."""
    full = f"${FORCE_FULL} is set" if os.environ.get(FORCE_FULL, "0") != "0" else ""
    if not full and policy.always_full:
        spec = covers_spec(policy.always_full)
        hit = next((f for f in change.files if spec.match_file(f)), None)
        full = f"{hit} matches changed.always_full" if hit else ""
    return replace(change, full=full, policy=policy, observe=observe)


def head_commit(root: Path) -> str | None:
    """The commit a run ran: the CI's ($GITHUB_SHA, $CI_COMMIT_SHA), else git's HEAD when
    the tracked files are unchanged; None when that is unknown (uncommitted work, no git)."""
    for name in ("GITHUB_SHA", "CI_COMMIT_SHA"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        [sha] = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (UsageError, ValueError):
        return None
    return None if dirty else sha


def _git(root: Path, *args: str) -> list[str]:
    import subprocess  # noqa: PLC0415 - only --changed runs git

    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--changed needs git: {exc}") from None
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["git failed"])[0]
        raise UsageError(f"--changed: git {args[0]} failed: {first}")
    return [line for line in proc.stdout.splitlines() if line]
