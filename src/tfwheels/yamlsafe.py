"""Read a YAML file into plain data with the line of every value, refusing what YAML should not do.

PyYAML's ``safe_load`` keeps the last of duplicate keys, expands aliases without limit and reports
nothing about where a value came from. Profiles need better: a duplicate key is an error, no tag
outside the core schema is ever constructed, alias expansion is bounded, and every value keeps its
line so a validation error can say ``file:line field: problem``.
"""

from __future__ import annotations

import re
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

# Mapping keys a profile may use: field names, environment variable names, header names such as
# x-buildbuddy-api-key, versions such as "2.16", platform properties such as Pool or a:b. Anything
# else (a newline, an ANSI escape, spaces) would break the one-line error rule if echoed.
_KEY = re.compile(r"[A-Za-z0-9_.:+-]+")

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
        return _scalar_value(node, self.file)

    def _mapping(self, node: MappingNode, loc: Loc, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _fail(self.file, line, "merge keys (<<) are not allowed; use extends:")
            if not isinstance(key_node, ScalarNode):
                raise _fail(self.file, line, "keys must be plain strings")
            key = key_node.value
            if not _KEY.fullmatch(key):
                shown = key if len(key) <= 40 else key[:40] + "..."
                where = ".".join(str(p) for p in loc)
                msg = (
                    f"{where + ': ' if where else ''}key {shown!r} is not allowed; "
                    "keys use letters, digits and _ . : + - only"
                )
                raise _fail(self.file, line, ascii_only(msg))
            if key in result:
                where = ".".join(str(p) for p in (*loc, key))
                msg = f"{where}: duplicate key; keep one of them"
                raise _fail(self.file, line, msg)
            result[key] = self.convert(value_node, (*loc, key), depth + 1)
            self.lines[(*loc, key)] = line
        return result


def ascii_only(text: str) -> str:
    """``text`` with every non-printable or non-ASCII character escaped, for a one-line message."""
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text)


def _scalar_value(node: ScalarNode, file: str = "<profile>") -> Any:
    """Construct one scalar with the safe constructor (ints, floats, bools, null, strings)."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except ValueError as exc:  # e.g. an int of more than 4300 digits (sys.set_int_max_str_digits)
        line = node.start_mark.line + 1
        msg = f"value of {len(node.value)} characters is not a usable number; quote it or shorten it"
        raise _fail(file, line, msg) from exc
    finally:
        loader.dispose()


def _flow_depth(text: str) -> tuple[int, int]:
    """The deepest nesting of flow brackets outside quotes and comments, and its first line.

    PyYAML's composer recurses once per level, so ``a: [[[[...`` thousands deep would end in a
    RecursionError before the converter could count the levels; this scan looks first. It
    over-counts at worst (a ``[`` inside a plain scalar), which only matters past MAX_DEPTH.
    """
    depth = deepest = 0
    line = deepest_line = 1
    quote = ""
    comment = False
    previous = " "
    for char in text:
        if char == "\n":
            line += 1
            comment = False
        elif comment:
            pass
        elif quote:
            if char == quote and not (quote == '"' and previous == "\\"):
                quote = ""
        elif char in "'\"" and previous in " \t[{,:":
            quote = char
        elif char == "#" and previous in " \t":
            comment = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest, deepest_line = depth, line
        elif char in "]}":
            depth = max(0, depth - 1)
        previous = char if not (previous == "\\" and char == "\\") else " "
        if char == "\n":
            previous = " "
    return deepest, deepest_line


_LIBYAML = getattr(yaml, "CSafeLoader", None)


def _compose_fast(text: str) -> Node | None:
    """The node tree from libyaml (20 times PyYAML's speed), or None when it is not installed
    or finds anything wrong: then PyYAML composes again, for its error messages."""
    if _LIBYAML is None:
        return None
    try:
        return yaml.compose(text, Loader=_LIBYAML)
    except (yaml.YAMLError, RecursionError, ValueError):
        return None


def load_located(path: Path, display: str | None = None) -> Located:
    """Read ``path`` as a YAML mapping with line numbers; raise ProfileError with file:line."""
    file = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise _fail(file, 1, f"file is {size} bytes, over the {MAX_BYTES} byte limit for a profile")
        with path.open("rb") as handle:  # at most one byte past the limit: it may grow meanwhile
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ProfileError(f"{file}:1 cannot read the file: {exc.strerror}") from exc
    if len(raw) > MAX_BYTES:
        raise _fail(file, 1, f"file is over the {MAX_BYTES} byte limit for a profile")
    if b"\0" in raw:
        line = raw[: raw.index(b"\0")].count(b"\n") + 1
        raise _fail(file, line, "contains a NUL byte; profiles are UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail(file, line, "is not valid UTF-8; save it as UTF-8") from exc
    depth = _flow_depth(text)
    if depth[0] > MAX_DEPTH:
        msg = f"nested deeper than {MAX_DEPTH} levels ([ or {{ opened {depth[0]} deep); flatten it"
        raise _fail(file, depth[1], msg)
    node = _compose_fast(text)
    try:
        if node is None:  # libyaml refused it, or is missing: PyYAML's own reader says where
            node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError as exc:  # a nesting the pre-scan did not see (e.g. block in flow)
        raise _fail(file, 1, f"nested too deep for YAML to read; flatten it to {MAX_DEPTH} levels") from exc
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
