"""Read a registry file with PyYAML's safe loader, keeping the line of every mapping.

Registry errors must name a line, so mappings are built as `LineDict`s that remember where
they start. A registry is plain data (mappings, sequences, scalars): with libyaml such a
document is folded straight from its parse events into objects (`build`), scalars resolved
by PyYAML's own YAML 1.1 rules, which for 10,000 entries is 2.5 to 3 times faster than
composing PyYAML's node graph first. Anything beyond plain data (anchors, aliases, tags,
merge keys, collection keys, several documents) takes the full safe loader, so the result
is always what PyYAML's safe loader gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml import events as ev

from runner.errors import RegistryError


class LineDict(dict[Any, Any]):
    """A mapping that knows the 1-based line it starts on."""

    line: int = 0


class Unsupported(Exception):
    """The document needs the full loader."""


_WORDS = frozenset({"yes", "no", "true", "false", "on", "off", "null"})
_STR = "tag:yaml.org,2002:str"
_FALLBACK_TAGS = frozenset({"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})
_CTOR = yaml.SafeLoader("")  # resolves and constructs single scalars, nothing else
_RESOLVE: Any = _CTOR.resolve
_EXPECT_KEY = object()


def scalar(event: Any) -> Any:
    """A scalar event's value under YAML 1.1's implicit rules, as SafeLoader reads it."""
    if event.anchor is not None or event.tag is not None:
        raise Unsupported
    value = event.value
    if not event.implicit[0] or (value[:1].isalpha() and value.lower() not in _WORDS):
        return value  # quoted or block scalars, and words, are strings
    if value.isdigit() and value.isascii() and (value[0] != "0" or value == "0"):
        return int(value)  # a decimal int (a leading 0 is octal in YAML 1.1: the long way)
    tag = _RESOLVE(yaml.ScalarNode, value, event.implicit)
    if tag == _STR:
        return value
    if tag in _FALLBACK_TAGS:
        raise Unsupported
    node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
    return _CTOR.yaml_constructors[tag](_CTOR, node)


class _Builder:
    """Folds events into objects: a stack of open collections and their pending keys."""

    def __init__(self) -> None:
        self.stack: list[Any] = []
        self.keys: list[Any] = []
        self.root: Any = None
        self.documents = 0

    def add(self, value: Any, line: int, collection: bool = False) -> None:
        if not self.stack:
            self.root = value
        elif type(self.stack[-1]) is list:
            self.stack[-1].append(value)
        elif self.keys[-1] is _EXPECT_KEY:
            self._key(value, line, collection)
        else:
            self.stack[-1][self.keys[-1]] = value
            self.keys[-1] = _EXPECT_KEY

    def _key(self, key: Any, line: int, collection: bool) -> None:
        if collection:
            raise Unsupported  # the full loader explains what is wrong with it
        if key in self.stack[-1]:
            raise RegistryError(f"duplicate key {key!r}", file="", line=line)
        self.keys[-1] = key

    def open(self, container: Any, line: int) -> None:
        self.add(container, line, collection=True)
        self.stack.append(container)
        self.keys.append(_EXPECT_KEY)

    def close(self) -> None:
        self.stack.pop()
        self.keys.pop()


def build(text: str) -> Any:
    """The document in `text`, or `Unsupported`; syntax errors raise PyYAML's errors."""
    builder = _Builder()
    event: Any
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        kind = type(event)
        if kind is ev.ScalarEvent:
            builder.add(scalar(event), event.start_mark.line + 1)
        elif kind is ev.MappingStartEvent or kind is ev.SequenceStartEvent:
            _open(builder, event)
        elif kind is ev.MappingEndEvent or kind is ev.SequenceEndEvent:
            builder.close()
        elif kind is ev.AliasEvent:
            raise Unsupported
        elif kind is ev.DocumentStartEvent:
            builder.documents += 1
            if builder.documents > 1:
                raise Unsupported
    return builder.root


def _open(builder: _Builder, event: Any) -> None:
    if event.anchor is not None or event.tag is not None:
        raise Unsupported
    line = event.start_mark.line + 1
    if type(event) is ev.SequenceStartEvent:
        builder.open([], line)
        return
    mapping = LineDict()
    mapping.line = line
    builder.open(mapping, line)


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
        try:
            return build(text)
        except Unsupported:
            pass
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
