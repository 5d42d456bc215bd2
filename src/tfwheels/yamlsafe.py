"""Read a YAML file into plain data with the line of every value, refusing what YAML should not do.

PyYAML's ``safe_load`` keeps the last of duplicate keys, expands aliases without limit and reports
nothing about where a value came from. Profiles need better: a duplicate key is an error, no tag
outside the core schema is ever constructed, alias expansion is bounded, and every value keeps its
line so a validation error can say ``file:line field: problem``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
import yaml.reader
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tfwheels.errors import ProfileError

MAX_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_NODES = 20_000

Loc = tuple[str | int, ...]

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_CORE_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


@dataclass(frozen=True)
class Located:
    """Plain data read from one YAML file, with the 1-based line of every value by its path."""

    data: Any
    lines: dict[Loc, int]
    file: str


def _fail(file: str, line: int, problem: str) -> ProfileError:
    return ProfileError(f"{file}:{line} {problem}")


class _Converter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Loc, int] = {}
        self.count = 0

    def convert(self, node: Node, loc: Loc, depth: int) -> Any:
        line = node.start_mark.line + 1
        if node.tag == _TIMESTAMP and isinstance(node, ScalarNode):
            node.tag = "tag:yaml.org,2002:str"  # a date-like value such as a version stays text
        self.count += 1
        if self.count > MAX_NODES:
            msg = f"more than {MAX_NODES} values (an alias bomb?); profiles are small, flatten it"
            raise _fail(self.file, line, msg)
        if depth > MAX_DEPTH:
            raise _fail(self.file, line, f"nested deeper than {MAX_DEPTH} levels; flatten it")
        if node.tag not in _CORE_TAGS:
            msg = f"tag {node.tag!r} is not allowed; profiles use plain YAML values only"
            raise _fail(self.file, line, msg)
        self.lines[loc] = line
        if isinstance(node, MappingNode):
            return self._mapping(node, loc, depth)
        if isinstance(node, SequenceNode):
            return [self.convert(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        return _scalar_value(node)

    def _mapping(self, node: MappingNode, loc: Loc, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _fail(self.file, line, "merge keys (<<) are not allowed; use extends:")
            if not isinstance(key_node, ScalarNode):
                raise _fail(self.file, line, "keys must be plain strings")
            key = key_node.value
            if key in result:
                where = ".".join(str(p) for p in (*loc, key))
                msg = f"{where}: duplicate key; keep one of them"
                raise _fail(self.file, line, msg)
            result[key] = self.convert(value_node, (*loc, key), depth + 1)
            self.lines[(*loc, key)] = line
        return result


def _scalar_value(node: ScalarNode) -> Any:
    """Construct one scalar with the safe constructor (ints, floats, bools, null, strings)."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def load_located(path: Path, display: str | None = None) -> Located:
    """Read ``path`` as a YAML mapping with line numbers; raise ProfileError with file:line."""
    file = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{file}:1 cannot read the file: {exc.strerror}") from exc
    if len(raw) > MAX_BYTES:
        raise _fail(file, 1, f"file is {len(raw)} bytes, over the {MAX_BYTES} byte limit for a profile")
    if b"\0" in raw:
        line = raw[: raw.index(b"\0")].count(b"\n") + 1
        raise _fail(file, line, "contains a NUL byte; profiles are UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail(file, line, "is not valid UTF-8; save it as UTF-8") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        if "\\t" in problem or "tab" in problem.lower():
            problem += " (indent with spaces, not tabs)"
        raise _fail(file, line, f"YAML syntax error: {problem}") from exc
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        msg = f"contains the control character U+{exc.character:04X}; profiles are plain text, remove it"
        raise _fail(file, line, msg) from exc
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise _fail(file, 1, f"YAML error: {problem}") from exc
    if node is None:
        raise _fail(file, 1, "is empty; a profile is a mapping such as 'project: tensorflow'")
    if not isinstance(node, MappingNode):
        line = node.start_mark.line + 1
        raise _fail(file, line, "top level must be a mapping of keys to values, not a list or a scalar")
    conv = _Converter(file)
    data = conv.convert(node, (), 0)
    return Located(data=data, lines=conv.lines, file=file)
