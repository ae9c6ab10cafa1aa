"""A YAML reader that keeps the line of every mapping key and rejects duplicate keys."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node


class ConfigError(Exception):
    """One or more problems in a configuration file, each with file, line and key path."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class Problem:
    __slots__ = ("file", "line", "message", "path")

    def __init__(self, file: str, line: int | None, path: str, message: str) -> None:
        self.file = file
        self.line = line
        self.path = path
        self.message = message

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f"{self.path}: " if self.path else ""
        return f"{where}: {key}{self.message}"


class LineDict(dict[str, Any]):
    """A mapping from YAML that remembers its own line and each key's line (1-based)."""

    line: int = 0
    key_lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: Node) -> LineDict:
    assert isinstance(node, MappingNode)
    seen: set[str] = set()
    for key_node, _ in node.value:
        # Check the keys written in this mapping before merges (<<) flatten it:
        # a merged key overridden by an explicit one is YAML's rule, not a typo.
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if key_node.value in seen:
            raise ConstructorError(
                None, None, f"duplicate key '{key_node.value}'", key_node.start_mark
            )
        seen.add(key_node.value)
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool):
            raise ConstructorError(
                None, None, f"unsupported mapping key {key!r}", key_node.start_mark
            )
        result[str(key)] = loader.construct_object(value_node, deep=True)
        result.key_lines[str(key)] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str, filename: str) -> Any:
    """Parse YAML text; syntax errors become a ConfigError with the file and line."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        msg = exc.problem or str(exc)
        if exc.context:
            msg = f"{msg} ({exc.context})"
        raise ConfigError([Problem(filename, line, "", f"YAML syntax: {msg}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(filename, None, "", f"YAML syntax: {exc}")]) from None
