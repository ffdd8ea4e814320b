"""`--changed REF`: the entries a change touches, from `git diff` and each entry's `covers`.

An entry is touched when a changed file matches one of its `covers` globs (.gitignore
syntax, through pathspec) or is the entry's own test file or directory. An entry
without `covers` is always selected: nothing says what it protects, so it is safe to run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from runner.errors import UsageError
from runner.model import Entry

if TYPE_CHECKING:
    import pathspec

GIT_TIMEOUT = 60.0


@dataclass(frozen=True, kw_only=True)
class Change:
    """What changed since `ref`, as paths relative to the project root."""

    ref: str
    files: tuple[str, ...]

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
    committed = _git(root, "diff", "--name-only", "--relative", f"{ref}...")
    working = _git(root, "diff", "--name-only", "--relative", "HEAD")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard")
    files = sorted({*committed, *working, *untracked})
    return Change(ref=ref, files=tuple(files))


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
