"""A fast path for plain YAML: build objects straight from libyaml's parse events.

PyYAML's safe loader first composes a node graph, then constructs objects from it; for
a 10,000-entry registry the graph costs more than parsing does. Registries are plain
data (mappings, sequences, scalars), so `build` folds the event stream directly into
`LineDict`s and lists, resolving scalars with PyYAML's own YAML 1.1 rules. Anything
outside that subset (anchors, aliases, explicit tags, merge keys, collection keys, more
than one document) raises `Unsupported`, and the caller uses the full loader instead:
the result is always what PyYAML's safe loader (on libyaml) gives.
"""

from __future__ import annotations

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
