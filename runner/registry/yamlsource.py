"""Read a YAML file with PyYAML's safe loader, keeping the line of every mapping.

Registry errors must name a line, so mappings are built as `LineDict`s that remember
where they start. With libyaml, plain documents are built straight from parse events
(runner.yamlfast); documents with anchors, tags or merge keys take the full loader.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import yaml

from runner.errors import RegistryError
from runner.registry import yamlfast
from runner.registry.yamlfast import LineDict

MAX_BYTES = 16 * 1024 * 1024

_HAVE_LIBYAML = hasattr(yaml, "CSafeLoader")


if _HAVE_LIBYAML:

    class _LineLoader(yaml.CSafeLoader):
        """Safe loader (libyaml) whose mappings are `LineDict`s."""

else:  # pragma: no cover - libyaml missing

    class _LineLoader(yaml.SafeLoader):  # type: ignore[no-redef]
        """Safe loader (pure Python) whose mappings are `LineDict`s."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise RegistryError("mapping keys must be plain scalars", file="", line=result.line)
        if key in result:
            raise _duplicate_key(key, key_node)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


def _duplicate_key(key: object, node: yaml.Node) -> RegistryError:
    return RegistryError(f"duplicate key {key!r}", file="", line=node.start_mark.line + 1)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# A plain scalar that starts with a letter can only be a bool, a null or a string under
# YAML 1.1's implicit rules; answering those without PyYAML's regex walk makes a
# 10,000-entry registry load several times faster. Anything else takes the usual path.
_WORDS = frozenset({"yes", "no", "true", "false", "on", "off", "null"})
_STR_TAG = "tag:yaml.org,2002:str"
_resolve: Any = _LineLoader.resolve


def _fast_resolve(self: Any, kind: Any, value: Any, implicit: Any) -> Any:
    if (
        kind is yaml.ScalarNode
        and implicit[0]
        and value[:1].isalpha()
        and value.lower() not in _WORDS
    ):
        return _STR_TAG
    return _resolve(self, kind, value, implicit)


_LineLoader.resolve = _fast_resolve  # type: ignore[method-assign]


def read_text(path: Path) -> str:
    """The file's text, or a RegistryError saying why it cannot be read."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            mib = f"{size / 2**20:.1f}"
            raise RegistryError(f"file is {mib} MiB; the limit is 16 MiB", file=str(path))
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise RegistryError("registry file not found", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise RegistryError(f"not UTF-8 text (byte {exc.start})", file=str(path)) from None
    except OSError as exc:
        raise RegistryError(f"cannot read: {exc.strerror}", file=str(path)) from None


def _parse(text: str) -> Any:
    """Plain documents through the event fast path; anything else through the loader."""
    if _HAVE_LIBYAML:
        collecting = gc.isenabled()
        gc.disable()  # tens of thousands of acyclic objects: no cycle to look for
        try:
            return yamlfast.build(text)
        except yamlfast.Unsupported:
            pass
        finally:
            if collecting:
                gc.enable()
    return yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass


def load_yaml(path: Path) -> Any:
    """Parse `path` safely; every failure is a RegistryError naming file and line."""
    text = read_text(path)
    try:
        return _parse(text)
    except RegistryError as exc:
        raise RegistryError(exc.reason, file=str(path), line=exc.line) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise RegistryError(f"invalid YAML: {problem}", file=str(path), line=line) from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        raise RegistryError(f"invalid YAML: {exc}".splitlines()[0], file=str(path)) from None
