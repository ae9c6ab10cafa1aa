"""A YAML reader that keeps the line of every mapping key and rejects duplicate keys."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


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
    # Keys YAML read as something other than text (an int, a float, a date), as written:
    # `+918000000001:` is the int 918000000001 to YAML.
    raw_keys: dict[str, str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines = {}
        self.raw_keys = {}


def join_path(parts: list[str]) -> str:
    out = ""
    for part in parts:
        out += part if part.startswith("[") else (f".{part}" if out else part)
    return out


class _KeyedError(yaml.MarkedYAMLError):
    """A construction error that knows the key path it happened at."""

    def __init__(self, path: str, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.path = path


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.key_path: list[str] = []


def _child(loader: _Loader, part: str, node: Node) -> Any:
    """Construct ``node`` with ``part`` on the key path; a bad value (a date like
    2026-13-45) becomes an error at that path instead of an escaping ValueError."""
    loader.key_path.append(part)
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:
        raise _KeyedError(
            join_path(loader.key_path), f"cannot read this value: {exc}", node.start_mark
        ) from None
    finally:
        loader.key_path.pop()


def _construct_mapping(loader: _Loader, node: Node) -> LineDict:
    assert isinstance(node, MappingNode)
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        # Check the keys written in this mapping before merges (<<) flatten it:
        # a merged key overridden by an explicit one is YAML's rule, not a typo.
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, ScalarNode):
            # `? [a, b]` or `? {a: b}` (YAML's complex keys): no config key is one, and
            # its node value (a list) cannot even be looked up among the names seen
            raise _KeyedError(
                join_path(loader.key_path),
                "unsupported mapping key: keys are plain text, not a list or a mapping",
                key_node.start_mark,
            )
        if key_node.value in seen:
            raise _KeyedError(
                join_path([*loader.key_path, str(key_node.value)]),
                f"duplicate key '{key_node.value}' (first written on line {seen[key_node.value]})",
                key_node.start_mark,
            )
        seen[key_node.value] = line
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = _child(loader, str(key_node.value), key_node)
        if not isinstance(key, str | int | float | bool):
            raise _KeyedError(
                join_path(loader.key_path),
                f"unsupported mapping key {key_node.value!r}: keys are plain text",
                key_node.start_mark,
            )
        name = str(key)
        if not isinstance(key, str):
            result.raw_keys[name] = str(key_node.value)
        result[name] = _child(loader, str(key_node.value), value_node)
        result.key_lines[name] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: Node) -> list[Any]:
    assert isinstance(node, SequenceNode)
    return [_child(loader, f"[{i}]", item) for i, item in enumerate(node.value)]


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def read_yaml(text: str, filename: str) -> Any:
    """Parse YAML text; syntax errors become a ConfigError with the file, line and, where
    the parser got that far, the key path."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except _KeyedError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise ConfigError([Problem(filename, line, exc.path, f"YAML: {exc.problem}")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        msg = exc.problem or str(exc)
        if exc.context:
            msg = f"{msg} ({exc.context})"
        path = path_at_error(text)
        raise ConfigError([Problem(filename, line, path, f"YAML syntax: {msg}")]) from None
    except yaml.reader.ReaderError as exc:
        # A character YAML does not allow (a NUL, a control byte): name its line.
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        what = f"character {exc.character!r}" if isinstance(exc.character, str) else "byte"
        raise ConfigError(
            [Problem(filename, line, "", f"YAML syntax: {what} is not allowed in YAML text")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(filename, None, "", f"YAML syntax: {exc}")]) from None
    except RecursionError:
        raise ConfigError(
            [Problem(filename, None, "", "YAML nests too deep (or an alias refers to itself)")]
        ) from None


class _Frame:
    __slots__ = ("index", "is_map", "key", "want_key")

    def __init__(self, is_map: bool) -> None:
        self.is_map = is_map
        self.key: str | None = None
        self.want_key = True
        self.index = -1


def path_at_error(text: str) -> str:
    """The key path the parser was inside when it stopped at a syntax error: the mapping
    whose entries it was reading, plus the key whose value it was reading, if any."""
    stack: list[_Frame] = []

    def path() -> str:
        parts = []
        for f in stack:
            if f.is_map and f.key is not None and not f.want_key:
                parts.append(f.key)
            elif not f.is_map and f.index >= 0:
                parts.append(f"[{f.index}]")
        return join_path(parts)

    def node_starts() -> None:
        if stack and not stack[-1].is_map:
            stack[-1].index += 1

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            top = stack[-1] if stack else None
            if isinstance(event, ScalarEvent | AliasEvent):
                if top is not None and top.is_map and top.want_key:
                    top.key = event.value if isinstance(event, ScalarEvent) else "*alias"
                    top.want_key = False
                elif top is not None and top.is_map:
                    top.want_key = True
                else:
                    node_starts()
            elif isinstance(event, CollectionStartEvent):
                if top is not None and top.is_map and top.want_key:
                    top.key = "?"  # a complex key: nothing better to name
                    top.want_key = False
                node_starts()
                stack.append(_Frame(isinstance(event, MappingStartEvent)))
            elif isinstance(event, MappingEndEvent | SequenceEndEvent):
                stack.pop()
                if stack and stack[-1].is_map:
                    stack[-1].want_key = True
    except yaml.YAMLError:
        return path()
    except RecursionError:
        return ""
    return ""
