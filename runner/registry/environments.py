"""`--env NAME`: environment profiles from the registry's `environments:` section.

A profile sets variables for the suites (such as the URLs of a deployed platform) and
names the secrets it needs. Secrets never live in the file: a variable whose name looks
like a secret is refused there, and every name under `secrets:` must be set in the
runner's own environment. A value may be `${NAME}`, read from that environment too.
"""

from __future__ import annotations

import os
import re
from typing import Any, Protocol

from runner.errors import RegistryError, UsageError
from runner.model import Environment, Registry
from runner.registry.yamlread import LineDict

ENV_KEYS = {"description", "variables", "secrets"}
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_RE = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|API_?KEY", re.I)
REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Source(Protocol):
    def fail(self, line: int | None, message: str) -> RegistryError: ...


def environments(raw: Any, src: _Source, line: int) -> dict[str, Environment]:
    if not isinstance(raw, LineDict):
        raise src.fail(line, "'environments' must be a mapping of profile names")
    return {str(name): _profile(str(name), body, src, raw.line) for name, body in raw.items()}


def _profile(name: str, body: Any, src: _Source, line: int) -> Environment:
    what = f"environment {name!r}"
    body = LineDict() if body is None else body
    if not isinstance(body, LineDict):
        raise src.fail(line, f"{what} must be a mapping")
    unknown = sorted(str(k) for k in body if k not in ENV_KEYS)
    if unknown:
        raise src.fail(
            body.line, f"{what}: unknown key {unknown[0]!r} (allowed: {sorted(ENV_KEYS)})"
        )
    return Environment(
        name=name,
        description=str(body.get("description", "")),
        variables=_variables(body.get("variables") or {}, src, body.line or line, what),
        secrets=_secret_names(body.get("secrets") or [], src, body.line or line, what),
    )


def _variables(raw: Any, src: _Source, line: int, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise src.fail(line, f"{what}: 'variables' must map NAME: value")
    for key, value in raw.items():
        if not isinstance(key, str) or not NAME_RE.match(key) or not isinstance(value, str):
            raise src.fail(line, f"{what}: variable {key!r} needs a NAME and a string value")
        if SECRET_RE.search(key) and not REF_RE.fullmatch(value.strip()):
            raise src.fail(
                line,
                f"{what}: {key!r} looks like a secret; list it under 'secrets' and set it "
                "in the environment, never in the registry",
            )
    return tuple((str(k), str(v)) for k, v in raw.items())


def _secret_names(raw: Any, src: _Source, line: int, what: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) and NAME_RE.match(n) for n in raw):
        raise src.fail(line, f"{what}: 'secrets' must be a list of environment variable names")
    return tuple(raw)


def resolve(registry: Registry, name: str) -> dict[str, str]:
    """The variables profile `name` sets for the suites; missing secrets are usage errors."""
    profile = registry.environments.get(name)
    if profile is None:
        known = ", ".join(sorted(registry.environments)) or "none in the registry"
        raise UsageError(f"unknown environment {name!r} (defined: {known})")
    missing = [s for s in profile.secrets if not os.environ.get(s)]
    if missing:
        raise UsageError(
            f"environment {name!r} needs ${missing[0]} set (a secret: never in the file)"
        )
    return {key: _expand(name, key, value) for key, value in profile.variables}


def _expand(profile: str, key: str, value: str) -> str:
    def lookup(match: re.Match[str]) -> str:
        if match.group(1) not in os.environ:
            raise UsageError(f"environment {profile!r}: {key} needs ${match.group(1)} set")
        return os.environ[match.group(1)]

    return REF_RE.sub(lookup, value)


def describe(registry: Registry, name: str) -> dict[str, Any]:
    """What a report records: the profile and the names it set, never a value."""
    profile = registry.environments[name]
    return {
        "name": name,
        "description": profile.description,
        "variables": [key for key, _ in profile.variables],
        "secrets": list(profile.secrets),
    }
