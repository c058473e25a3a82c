"""YAML that remembers where each value came from, so a bad bundle is refused with file and line."""

from pathlib import Path
from typing import Any

import yaml


class LineDict(dict):
    """A mapping read from YAML, with the line of itself and of each key."""

    line: int = 0
    key_lines: dict[str, int]


class LineList(list):
    """A sequence read from YAML, with the line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The (libyaml) safe loader whose mappings and sequences carry 1-based line numbers."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file into LineDict/LineList values (plain scalars stay plain)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 — a SafeLoader subclass


def line_of(root: Any, loc: tuple[Any, ...]) -> int | None:
    """The line of the value at a path of keys/indexes (the nearest known line when it is missing)."""
    node, line = root, getattr(root, "line", None)
    for part in loc:
        if isinstance(node, LineDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, LineList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line
