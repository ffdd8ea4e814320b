"""One base error, caught once at the CLI edge; each subclass carries its exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit-code contract CI relies on (see README, "Exit codes")."""

    OK = 0
    TESTS_FAILED = 1
    USAGE = 2
    EMPTY_SELECTION = 3
    GATE_FAILED = 4
    RUN_BROKEN = 5
    INTERRUPTED = 130


class RunnerError(Exception):
    """Base of every error the runner reports to a user as one line."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(RunnerError):
    """A bad option or argument."""


class RegistryError(RunnerError):
    """The registry cannot be read or is invalid; the message names file and line."""

    def __init__(self, message: str, *, file: str, line: int | None = None) -> None:
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")
        self.reason = message
        self.file = file
        self.line = line


class EmptySelectionError(RunnerError):
    """Nothing matched the selection criteria."""

    exit_code = ExitCode.EMPTY_SELECTION


class BaselineFailedError(RunnerError):
    """`mutate`: the entries fail with no mutant in place, so no mutant can be judged."""

    exit_code = ExitCode.TESTS_FAILED


class RunBrokenError(RunnerError):
    """The child run could not be started or its results cannot be trusted."""

    exit_code = ExitCode.RUN_BROKEN
