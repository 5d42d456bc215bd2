"""Fix undeclared inclusions at their root: declare the missing dependency in the BUILD file.

``invoke build-tf --fix`` runs ``build_with_fixes``: build; when Bazel fails, diagnose its log;
for each ``undeclared-inclusion`` finding ask ``bazel query``, in the source tree and with the
build's own Bazel, startup flags and repository overrides, which ``cc_library`` declares each
header; add that library to the ``deps`` of the failing rule (with buildozer when it is on PATH,
else with a text edit that keeps the file's formatting); write the change as a unified diff under
``patches/`` with a header saying what, why and how it was made; append it with its sha256 to the
profile's patch series; reload the profile and build again. The patch stage then applies the new
patch like any other, all or nothing. The loop ends when the build is green, or when a round makes
no progress (no new patch, or a finding that was already fixed comes back).

Headers that all come from the compiler or the SDK are never patched: the cause is a stale
toolchain configuration, and the advice says so.

Parsing and editing are pure functions (``parse_query_output``, ``add_deps``,
``append_patch_entry``, ``unified_diff`` ...); everything that runs a tool goes through
``tfwheels.run.run`` with an argument list.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import re
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import yaml
from rich.markup import escape

from tfwheels import __version__
from tfwheels.atomic import file_sha256, write_atomic
from tfwheels.console import err
from tfwheels.credentials import session as remote_session
from tfwheels.diagnose import (
    Finding,
    UndeclaredInclusion,
    clean_line,
    diagnose_file,
    is_toolchain_header,
)
from tfwheels.errors import BuildError, TfwheelsError, UsageError
from tfwheels.profiles import PROJECT_DIRS, Profile, load_profile, resolve_profile_path
from tfwheels.render import expand
from tfwheels.run import run, which
from tfwheels.yamlsafe import load_located

if TYPE_CHECKING:
    from tfwheels.pipeline import BuildResult
    from tfwheels.plan import BuildOptions, Plan

__all__ = [
    "BazelQuery",
    "FixError",
    "FixReport",
    "Owner",
    "Ownership",
    "RuleNotFound",
    "WrittenPatch",
    "add_deps",
    "append_patch_entry",
    "build_file_of",
    "build_with_fixes",
    "check_patch_applies",
    "choose_owner",
    "defining_file",
    "edit_build_file",
    "error_excerpt",
    "find_owner",
    "fix_findings",
    "fixed_pairs",
    "header_location",
    "next_patch_number",
    "normalize_label",
    "owner_query",
    "package_of",
    "parse_missing_target",
    "parse_query_output",
    "patch_file_name",
    "patch_folder",
    "patch_header",
    "print_findings",
    "query_flags",
    "relative_label",
    "split_label",
    "toolchain_advice",
    "unified_diff",
]

DEFAULT_MAX_ROUNDS = 5
# The rule kinds whose ``hdrs`` make a header includable by their dependents.
OWNER_KINDS = "^(cc_library|objc_library|cc_import) rule$"
# Query flags that must match the build's, or Bazel refetches repositories between the commands.
_REPOSITORY_FLAGS = ("--override_repository=", "--repo_env=")
_BUILDOZER_CHANGED, _BUILDOZER_UNCHANGED = 0, 3
_MAX_LOG_LINE = 64 * 1024


class FixError(TfwheelsError):
    """A finding cannot be fixed automatically; the message says why and what to do instead."""


class RuleNotFound(FixError):
    """The failing rule is not a call with a literal ``name = "..."`` in its BUILD file."""


# --------------------------------------------------------------------------------------------
# Labels and paths (pure)


def split_label(label: str) -> tuple[str, str, str]:
    """``(repo, package, name)`` of an absolute label; repo is ``""`` for the main repository.

    >>> split_label("@zlib//:zlib")
    ('@zlib', '', 'zlib')
    >>> split_label("//tensorflow/core/platform")
    ('', 'tensorflow/core/platform', 'platform')
    >>> split_label("@//a/b:c.h")
    ('', 'a/b', 'c.h')
    """
    repo, slashes, rest = label.partition("//")
    if not slashes:
        msg = f"{label!r} is not an absolute Bazel label (//package:name)"
        raise ValueError(msg)
    package, colon, name = rest.partition(":")
    if not colon:
        name = package.rsplit("/", 1)[-1]
    return ("" if repo in ("@", "@@") else repo), package, name


def normalize_label(label: str, package: str, repo: str = "") -> str:
    """``label`` written out in full, resolving ``:name`` and ``name`` against ``package``.

    >>> normalize_label(":types", "tensorflow/core/platform")
    '//tensorflow/core/platform:types'
    >>> normalize_label("//tensorflow/core/platform", "x")
    '//tensorflow/core/platform:platform'
    """
    if "//" not in label:
        return f"{repo}//{package}:{label.lstrip(':')}"
    label_repo, label_package, name = split_label(label)
    return f"{label_repo}//{label_package}:{name}"


def relative_label(dep: str, rule: str) -> str:
    """``dep`` as ``rule``'s BUILD file should write it: ``:name`` in the same package.

    >>> relative_label("//a/b:c", "//a/b:d")
    ':c'
    >>> relative_label("//x:c", "//a/b:d")
    '//x:c'
    """
    dep_repo, dep_package, name = split_label(dep)
    rule_repo, rule_package, _ = split_label(rule)
    if (dep_repo, dep_package) == (rule_repo, rule_package):
        return f":{name}"
    return normalize_label(dep, dep_package, dep_repo)


_GENERATED = re.compile(r"^bazel-out/[^/]+/(?:bin|genfiles)/")


def header_location(header: str, tree: Path) -> tuple[str, str]:
    """``(repo, path)`` of a header as Bazel's error lists it: an exec-root-relative path
    (``tensorflow/x.h``, ``external/zlib/zlib.h``, ``bazel-out/k8-opt/bin/x.pb.h``) or an
    absolute path inside ``tree``. Anything else raises FixError.

    >>> header_location("bazel-out/k8-opt/bin/external/com_google_protobuf/src/a.pb.h", Path("/t"))
    ('@com_google_protobuf', 'src/a.pb.h')
    >>> header_location("/t/tensorflow/core/platform/types.h", Path("/t"))
    ('', 'tensorflow/core/platform/types.h')
    """
    path = header
    if path.startswith("/"):
        inside = PurePosixPath(path)
        if not inside.is_relative_to(str(tree)):
            msg = f"{header} is outside the source tree, so no target of the tree declares it"
            raise FixError(msg)
        path = str(inside.relative_to(str(tree)))
    path = _GENERATED.sub("", path)
    if path.startswith("external/"):
        repo, _, rest = path.removeprefix("external/").partition("/")
        return f"@{repo}", rest
    return "", path


def package_of(root: Path, path: str) -> str:
    """The package of ``path`` under ``root``: its nearest folder holding a BUILD file."""
    folder = PurePosixPath(path).parent
    while True:
        if any((root / folder / name).is_file() for name in ("BUILD.bazel", "BUILD")):
            return "" if str(folder) == "." else str(folder)
        if str(folder) in (".", ""):
            msg = f"no BUILD file above {path} in {root}; no package contains it"
            raise FixError(msg)
        folder = folder.parent


def build_file_of(tree: Path, rule: str) -> Path:
    """The BUILD file that defines ``rule`` in ``tree`` (BUILD.bazel wins, as in Bazel)."""
    repo, package, _ = split_label(rule)
    if repo:
        msg = (
            f"{rule} is in the external repository {repo}, whose BUILD files are not part of the "
            f"source tree; patch it through that repository's rule in the WORKSPACE (its "
            "patches attribute)"
        )
        raise FixError(msg)
    for name in ("BUILD.bazel", "BUILD"):
        candidate = tree / package / name
        if candidate.is_file():
            return candidate
    msg = f"no BUILD file for {rule} in {tree / package}"
    raise FixError(msg)


# --------------------------------------------------------------------------------------------
# bazel query: expressions and output (pure)


@dataclass(frozen=True)
class Owner:
    """A rule that declares a header in its ``hdrs`` (or ``textual_hdrs``)."""

    label: str
    kind: str = "cc_library"


def _regex_label(label: str) -> str:
    """A query regex matching exactly ``label`` inside a list attribute's ``[a, b]`` text.

    ``\\x5B`` is ``[``: written so, the pattern survives being echoed through rich markup (where
    a backslash before ``[`` is an escape) and pasted back into a shell.
    """
    return r"[\x5B ]" + re.escape(label).replace('"', r"\"") + r"[,\]]"


def owner_query(label: str, universe: str) -> str:
    """The query for the rules in ``universe`` whose hdrs or textual_hdrs list ``label``.

    >>> print(owner_query("//a:b.h", "//a:all"))
    kind("^(cc_library|objc_library|cc_import) rule$", attr(hdrs, "[\\x5B ]//a:b\\.h[,\\]]", //a:all) + attr(textual_hdrs, "[\\x5B ]//a:b\\.h[,\\]]", //a:all))
    """
    pattern = _regex_label(label)
    return (
        f'kind("{OWNER_KINDS}", attr(hdrs, "{pattern}", {universe}) + '
        f'attr(textual_hdrs, "{pattern}", {universe}))'
    )


_LABEL_KIND = re.compile(r"^(?P<kind>\w+) rule (?P<label>@{0,2}[\w.~+-]*//\S*)(?: \(\w+\))?$")
_BARE_LABEL = re.compile(r"^(?P<label>@{0,2}[\w.~+-]*//\S*)$")


def parse_query_output(stdout: str) -> list[Owner]:
    """The rules in ``bazel query --output=label_kind`` output (bare labels are accepted too).

    >>> parse_query_output("cc_library rule //tensorflow/core/platform:types\\n")
    [Owner(label='//tensorflow/core/platform:types', kind='cc_library')]
    """
    owners: list[Owner] = []
    for line in stdout.splitlines():
        line = line.strip()
        if match := _LABEL_KIND.match(line):
            owners.append(Owner(match["label"], match["kind"]))
        elif match := _BARE_LABEL.match(line):
            owners.append(Owner(match["label"], "rule"))
    return owners


_NO_SUCH_TARGET = re.compile(r"no such target '(?P<label>[^']+)'")


def parse_missing_target(stderr: str) -> str | None:
    """The label Bazel names when a path resolves to no declared target (query exit 7).

    >>> parse_missing_target("ERROR: no such target '//a:orphan.h': target 'orphan.h' not "
    ...     "declared in package 'a'; however, a source file of this name exists.")
    '//a:orphan.h'
    """
    match = _NO_SUCH_TARGET.search(stderr)
    return match["label"] if match else None


def choose_owner(owners: Sequence[Owner], header_label: str) -> Owner:
    """The one owner of a header: the only one, or the only one in the header's own package.

    Several candidates without such a winner raise FixError listing them, since adding the
    wrong one would compile but link the wrong code.
    """
    if len(owners) == 1:
        return owners[0]
    if not owners:
        msg = f"no cc_library declares {header_label} in hdrs or textual_hdrs"
        raise FixError(msg)
    repo, package, _ = split_label(header_label)
    same = [o for o in owners if split_label(o.label)[:2] == (repo, package)]
    if len(same) == 1:
        return same[0]
    names = ", ".join(o.label for o in owners)
    msg = f"{header_label} is declared by several libraries ({names}); add the right one by hand"
    raise FixError(msg)


def query_flags(plan: Plan) -> list[str]:
    """The build's repository flags (overrides, repo_env), to pass to ``bazel query``.

    ``query`` does not read ``build`` lines of rc files, so the profile's flags rendered into
    ``.bazelrc.user`` must be given again; else Bazel would refetch repositories between the
    build and the query.
    """
    values = plan.host.placeholders()
    bazel = plan.profile.bazel
    candidates = [expand(flag, values) for flag in bazel.build_flags]
    candidates += [f"--repo_env={k}={expand(v, values)}" for k, v in sorted(bazel.repo_env.items())]
    candidates += list(plan.flags)
    flags: list[str] = []
    for flag in candidates:
        if flag.startswith(_REPOSITORY_FLAGS) and flag not in flags:
            flags.append(flag)
    return flags


# --------------------------------------------------------------------------------------------
# bazel query: running it


@dataclass(frozen=True)
class BazelQuery:
    """Runs ``bazel query`` in a source tree the way the build ran Bazel there.

    The same binary and startup flags reach the build's server, so a query costs no restart.
    """

    plan: Plan
    flags: tuple[str, ...]

    @classmethod
    def for_plan(cls, plan: Plan) -> BazelQuery:
        """A query runner for the tree, Bazel and flags of ``plan``."""
        return cls(plan, tuple(query_flags(plan)))

    @property
    def tree(self) -> Path:
        """The source tree queries run in."""
        return self.plan.tree

    def argv(self, command: str, *args: str) -> list[str]:
        """``bazel <startup> <command> <repository flags> ARGS``."""
        plan = self.plan
        return [str(plan.bazel.path), *plan.startup, command, *self.flags, *args]

    def run(self, *args: str, command: str = "query") -> tuple[int, str, str]:
        """Run one Bazel command; return its exit code, stdout and stderr."""
        with remote_session(self.plan):
            result = run(
                self.argv(command, *args), cwd=self.tree, env=self.plan.environment(), check=False
            )
        return result.exit_code, result.stdout, result.stderr

    def file_label(self, header: str) -> str:
        """The label of a header file: ``//pkg:path/in/pkg.h`` (or ``@repo//...``)."""
        repo, path = header_location(header, self.tree)
        if repo:
            root = Path(self._output_base()) / "external" / repo.lstrip("@")
            package = package_of(root, path)
            name = path[len(package) + 1 :] if package else path
            return f"{repo}//{package}:{name}"
        code, stdout, stderr = self.run("--noshow_progress", path)
        labels = [line.strip() for line in stdout.splitlines() if line.strip().startswith("//")]
        if code == 0 and labels:
            return labels[0]
        missing = parse_missing_target(stderr)
        if missing:
            msg = f"{path} is declared by no target ({missing} does not exist); declare it in a cc_library's hdrs"
            raise FixError(msg)
        msg = f"bazel query {path} failed (exit {code}): {_last_line(stderr)}"
        raise FixError(msg)

    def owners(self, label: str, universe: str, *, keep_going: bool = False) -> list[Owner]:
        """The rules in ``universe`` that declare ``label`` in hdrs or textual_hdrs."""
        args = ["--noshow_progress", "--output=label_kind"]
        if keep_going:
            args.append("--keep_going")
        code, stdout, stderr = self.run(*args, owner_query(label, universe))
        # 3: --keep_going skipped packages that fail to load; the rest is still an answer.
        if code not in (0, 3):
            msg = f"bazel query for the owner of {label} failed (exit {code}): {_last_line(stderr)}"
            raise FixError(msg)
        return parse_query_output(stdout)

    def _output_base(self) -> str:
        code, stdout, stderr = self.run("output_base", command="info")
        if code != 0:
            msg = f"bazel info output_base failed (exit {code}): {_last_line(stderr)}"
            raise FixError(msg)
        return stdout.strip()


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


@dataclass(frozen=True)
class Ownership:
    """Which library declares a header, and the queries that said so."""

    header: str
    label: str
    owner: Owner
    queries: tuple[str, ...]


def find_owner(query: BazelQuery, header: str, rule: str) -> Ownership:
    """The library that declares ``header``: searched first in the header's own package, then
    in its whole repository. Raises FixError when there is none or no single one."""
    label = query.file_label(header)
    repo, package, _ = split_label(label)
    universes = [f"{repo}//{package}:all", f"{repo}//..."]
    queries: list[str] = []
    candidates: list[Owner] = []
    for universe in universes:
        queries.append(owner_query(label, universe))
        found = query.owners(label, universe, keep_going=universe.endswith("..."))
        candidates = [o for o in found if o.label != rule]
        if candidates:
            break
    return Ownership(header, label, choose_owner(candidates, label), tuple(queries))


# --------------------------------------------------------------------------------------------
# Editing a BUILD file's text (pure)

_TOKEN = re.compile(
    r"""
      (?P<comment>\#[^\n]*)
    | (?P<string>(?:[rRbB]{1,2})?(?:\"\"\"(?:\\.|[^\\])*?\"\"\"|'''(?:\\.|[^\\])*?'''
                                  |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
    | (?P<name>[A-Za-z_]\w*)
    | (?P<open>[(\[{])
    | (?P<close>[)\]}])
    | (?P<comma>,)
    | (?P<other>\S)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class _Item:
    """One argument of a call or element of a list: tokens between commas."""

    key: str | None
    first: int  # token index where the item starts (its key, if any)
    value: int  # token index where the value starts
    last: int  # token index of the value's last token
    comma: int | None  # token index of the comma after it


class _Source:
    """A BUILD file's text as tokens, with bracket structure."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = [
            _Token(m.lastgroup or "other", m.group(), m.start(), m.end())
            for m in _TOKEN.finditer(text)
            if m.lastgroup != "comment"
        ]
        self.parent: list[int] = []  # index of the innermost open bracket around each token
        self.match: dict[int, int] = {}  # open bracket index -> its close bracket index
        stack: list[int] = []
        for index, token in enumerate(self.tokens):
            if token.kind == "close" and stack:
                self.match[stack.pop()] = index
            self.parent.append(stack[-1] if stack else -1)
            if token.kind == "open":
                stack.append(index)

    def items(self, open_index: int) -> list[_Item]:
        """The comma-separated items directly inside the bracket at ``open_index``."""
        close = self.match.get(open_index)
        if close is None:
            msg = (
                f"unbalanced brackets at offset {self.tokens[open_index].start}; fix the file first"
            )
            raise FixError(msg)
        items: list[_Item] = []
        current: list[int] = []
        for index in range(open_index + 1, close):
            if self.tokens[index].kind == "comma" and self.parent[index] == open_index:
                if current:
                    items.append(self._item(current, index))
                current = []
            else:
                current.append(index)
        if current:
            items.append(self._item(current, None))
        return items

    def _item(self, indexes: list[int], comma: int | None) -> _Item:
        first, tokens = indexes[0], self.tokens
        keyword = (
            len(indexes) >= 3
            and tokens[first].kind == "name"
            and tokens[indexes[1]].text == "="
            and tokens[indexes[2]].text != "="
        )
        if keyword:
            return _Item(tokens[first].text, first, indexes[2], indexes[-1], comma)
        return _Item(None, first, first, indexes[-1], comma)

    def literal(self, index: int) -> str | None:
        """The value of a string token, else None."""
        token = self.tokens[index]
        if token.kind != "string":
            return None
        try:
            value = ast.literal_eval(token.text)
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, str) else None

    def line_start(self, offset: int) -> int:
        return self.text.rfind("\n", 0, offset) + 1

    def indent_of(self, index: int) -> str | None:
        """The indentation before token ``index`` when it starts its line, else None."""
        start = self.tokens[index].start
        before = self.text[self.line_start(start) : start]
        return before if not before.strip() else None

    def line_indent(self, offset: int) -> str:
        line = self.text[self.line_start(offset) :]
        return line[: len(line) - len(line.lstrip(" \t"))]


def _find_rule(source: _Source, rule_name: str) -> tuple[int, list[_Item]]:
    """The ``(`` of the call with ``name = "<rule_name>"`` and its arguments."""
    found: list[tuple[int, list[_Item]]] = []
    for index, token in enumerate(source.tokens):
        if token.text != "(" or index == 0 or source.tokens[index - 1].kind != "name":
            continue
        items = source.items(index)
        if any(
            i.key == "name" and i.value == i.last and source.literal(i.value) == rule_name
            for i in items
        ):
            found.append((index, items))
    if len(found) != 1:
        where = "no call" if not found else f"{len(found)} calls"
        msg = (
            f'{where} with name = "{rule_name}" in this BUILD file (a macro or a loop may make '
            "the rule); add the dependency by hand"
        )
        raise RuleNotFound(msg)
    return found[0]


def _sort_key(label: str) -> tuple[int, tuple[str, ...]]:
    """buildifier's order for deps: plain strings, then ``:x``, then ``//`` and ``@`` labels,
    each compared by its parts split at ``.`` and ``:``."""
    phase = next((n for n, lead in enumerate((":", "//", "@"), 1) if label.startswith(lead)), 0)
    return phase, tuple(re.split(r"[:.]", label))


def _insert(text: str, edits: Iterable[tuple[int, str]]) -> str:
    """Apply insertions ``(offset, text)``; several at one offset go in the order given."""
    merged: dict[int, str] = {}
    for offset, piece in edits:
        merged[offset] = merged.get(offset, "") + piece
    for offset in sorted(merged, reverse=True):
        text = text[:offset] + merged[offset] + text[offset:]
    return text


def _extend_list(source: _Source, open_index: int, deps: list[str], quote: str) -> str:
    """Add ``deps`` to the list literal at ``open_index``, in the style the list already has."""
    text, tokens = source.text, source.tokens
    close = source.match[open_index]
    items = source.items(open_index)
    quoted = [f"{quote}{d}{quote}" for d in deps]
    if not items:
        return _insert(text, [(tokens[open_index].end, ", ".join(quoted))])
    values = [source.literal(i.value) if i.value == i.last else None for i in items]
    multi_line = "\n" in text[tokens[open_index].end : tokens[close].start]
    indent = (
        source.indent_of(items[-1].first) or source.line_indent(tokens[open_index].start) + "    "
    )
    edits: list[tuple[int, str]] = []
    remaining = list(zip(deps, quoted))
    ordered = all(isinstance(v, str) for v in values) and values == sorted(values, key=_sort_key)  # type: ignore[arg-type]
    if ordered:
        for item, value in zip(items, values):
            before = [(d, q) for d, q in remaining if _sort_key(d) < _sort_key(value)]  # type: ignore[arg-type]
            if not before:
                continue
            remaining = [r for r in remaining if r not in before]
            start = tokens[item.first].start
            if multi_line and source.indent_of(item.first) is not None:
                line = source.line_start(start)
                edits.append((line, "".join(f"{indent}{q},\n" for _, q in before)))
            else:
                edits.append((start, "".join(f"{q}, " for _, q in before)))
    if remaining:
        edits += _append_items(
            source, items[-1], close, [q for _, q in remaining], indent, multi_line
        )
    return _insert(text, edits)


def _append_items(
    source: _Source, last: _Item, close: int, quoted: list[str], indent: str, multi_line: bool
) -> list[tuple[int, str]]:
    """Insertions that put ``quoted`` after the ``last`` item of a list closed at ``close``."""
    text, tokens = source.text, source.tokens
    value_end = tokens[last.last].end
    anchor = tokens[last.comma].end if last.comma is not None else value_end
    comma = [] if last.comma is not None else [(value_end, ",")]
    if not multi_line:
        return [(value_end, "".join(f", {q}" for q in quoted))]
    line_end = text.find("\n", anchor)
    rest = text[anchor:line_end] if line_end >= 0 else text[anchor:]
    if (
        line_end >= 0
        and line_end < tokens[close].start
        and (not rest.strip() or rest.lstrip().startswith("#"))
    ):
        return [*comma, (line_end, "".join(f"\n{indent}{q}," for q in quoted))]
    # The closing bracket shares the last item's line (`    "b"]`): it stays there.
    if last.comma is None:
        return [(value_end, "".join(f",\n{indent}{q}" for q in quoted))]
    return [(anchor, "".join(f"\n{indent}{q}," for q in quoted))]


def _add_deps_argument(
    source: _Source, open_index: int, items: list[_Item], deps: list[str], quote: str
) -> str:
    """Insert ``deps = [...]`` after ``hdrs`` (else ``srcs``, else ``name``)."""
    text, tokens = source.text, source.tokens
    by_key = {i.key: i for i in items if i.key}
    anchor = by_key.get("hdrs") or by_key.get("srcs") or by_key.get("name") or items[-1]
    quoted = [f"{quote}{d}{quote}" for d in deps]
    value_end = tokens[anchor.last].end
    comma = [] if anchor.comma is not None else [(value_end, ",")]
    after = tokens[anchor.comma].end if anchor.comma is not None else value_end
    indent = source.indent_of(anchor.first)
    line_end = text.find("\n", after)
    rest = text[after:line_end] if line_end >= 0 else ""
    close = source.match[open_index]
    own_line = indent is not None and line_end >= 0 and line_end < tokens[close].start
    if own_line and (not rest.strip() or rest.lstrip().startswith("#")):
        assert indent is not None
        if len(quoted) == 1:
            value = f"[{quoted[0]}]"
        else:
            # One label per line, one indentation step (the rule's own) further in.
            value = "[\n" + "".join(f"{indent * 2}{q},\n" for q in quoted) + f"{indent}]"
        return _insert(text, [*comma, (line_end, f"\n{indent}deps = {value},")])
    return _insert(
        text,
        [
            *comma,
            (after, f" deps = [{', '.join(quoted)}]" + ("," if anchor.comma is not None else "")),
        ],
    )


def add_deps(text: str, rule_name: str, deps: Sequence[str], package: str) -> str:
    """Add ``deps`` (labels as the BUILD file should write them) to the rule ``rule_name``.

    Keeps the file's formatting: an existing ``deps = [...]`` list grows in its own style (one
    line or one label per line, sorted position when it is sorted), a missing one is inserted
    after ``hdrs``/``srcs`` with the rule's indentation and quote style; a ``deps`` that is not a
    list literal (``select(...)``, a variable) becomes ``[new] + <it>``. Labels already there
    are not added again; when nothing is left to add the text comes back unchanged.
    ``package`` is the rule's package, to compare ``:x`` with ``//pkg:x``.

    >>> print(add_deps('cc_library(\\n    name = "a",\\n    hdrs = ["a.h"],\\n)\\n', "a", ["//b"], "p"))
    cc_library(
        name = "a",
        hdrs = ["a.h"],
        deps = ["//b"],
    )
    <BLANKLINE>
    """
    source = _Source(text)
    open_index, items = _find_rule(source, rule_name)
    name_item = next(i for i in items if i.key == "name")
    quote = "'" if source.tokens[name_item.value].text.startswith("'") else '"'
    deps_item = next((i for i in items if i.key == "deps"), None)
    value = source.tokens[deps_item.value] if deps_item else None
    is_list = value is not None and value.text == "["
    present: set[str] = set()
    if deps_item is not None and is_list:
        for item in source.items(deps_item.value):
            literal = source.literal(item.value) if item.value == item.last else None
            if literal is not None:
                present.add(normalize_label(literal, package))
    new = []
    for dep in deps:
        full = normalize_label(dep, package)
        if full not in present:
            present.add(full)
            new.append(dep)
    if not new:
        return text
    if deps_item is None:
        return _add_deps_argument(source, open_index, items, new, quote)
    if is_list:
        return _extend_list(source, deps_item.value, new, quote)
    assert value is not None
    prefix = "[" + ", ".join(f"{quote}{d}{quote}" for d in new) + "] + "
    return _insert(text, [(value.start, prefix)])


# --------------------------------------------------------------------------------------------
# Patches: the diff, its header, its file name (pure)


def unified_diff(path: str, before: str, after: str) -> str:
    """A ``-p1`` unified diff of one file (``a/path``, ``b/path``), as ``diff -u`` writes it.

    >>> print(unified_diff("x/BUILD", "a\\n", "a\\nb\\n"), end="")
    --- a/x/BUILD
    +++ b/x/BUILD
    @@ -1 +1,2 @@
     a
    +b
    """
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    out: list[str] = []
    for line in lines:
        if line.endswith("\n"):
            out.append(line)
        else:  # the last line of a file without a final newline
            out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


_NUMBERED = re.compile(r"^(\d{4})-")


def next_patch_number(folder: Path) -> int:
    """One more than the highest ``NNNN-`` prefix of the patches in ``folder`` (1 when none)."""
    numbers = [int(m.group(1)) for p in folder.glob("*.patch") if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=0) + 1


def patch_file_name(number: int, rule: str) -> str:
    """``NNNN-<rule name>.patch``, with the name made safe for a file name.

    >>> patch_file_name(2, "//tensorflow/core/lib/strings:str_util")
    '0002-str_util.patch'
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", split_label(rule)[2]).strip("-.") or "rule"
    return f"{number:04d}-{name}.patch"


def patch_folder(profile: Profile) -> str:
    """Where new patches of ``profile`` go, relative to patches/: beside its last patch, else
    ``<project>/<version>``."""
    if profile.patches:
        return str(PurePosixPath(profile.patches[-1].file).parent)
    return f"{PROJECT_DIRS[profile.project]}/{profile.version}"


def patch_header(rule: str, owners: Sequence[Ownership], error: Sequence[str]) -> str:
    """The text before the diff: what the patch changes, the exact Bazel error, how it was made."""
    deps = ", ".join(dict.fromkeys(found.owner.label for found in owners))
    why = " ".join(
        f"{rule} includes {found.header}, which {found.owner.label} declares, without depending on it."
        for found in owners
    )
    queries = [q for found in owners for q in found.queries]
    lines = [
        f"Declare the dependency of {rule} on {deps}.",
        "",
        *textwrap.wrap(
            why + " So Bazel's header check failed (paths relative to the source tree):", 96
        ),
        "",
        *(f"  {line}" for line in error),
        "",
        "The owner was found with:" if len(queries) == 1 else "The owners were found with:",
        *(f"  bazel query '{q}'" for q in queries),
        "",
        f"This patch was generated by tfwheels build --fix (tfwheels {__version__}). Review it, and",
        "send it upstream when the same BUILD file is still wrong there.",
    ]
    return "\n".join(lines) + "\n\n"


_QUOTED_PATH = re.compile(r"'[^']+'\.?")  # a listed header; the last may end in "."


def error_excerpt(lines: Iterable[str], rule: str, tree: Path | None = None) -> list[str]:
    """The lines of Bazel's undeclared-inclusion error for ``rule``, as the log has them.

    The header line (``ERROR: ...: undeclared inclusion(s) in rule '<rule>':``), the
    ``this rule is missing ...`` line and the quoted paths after it; ``tree`` is cut from paths.
    """
    needle = f"undeclared inclusion(s) in rule '{rule}'"
    excerpt: list[str] = []
    for raw in lines:
        line = clean_line(raw)
        if not excerpt:
            if needle in line:
                excerpt.append(line)
            continue
        if line.startswith("this rule is missing") or _QUOTED_PATH.fullmatch(line):
            excerpt.append(line if not line.startswith("'") else f"  {line}")
            continue
        break
    if tree is not None:
        prefix = str(tree).rstrip("/") + "/"
        excerpt = [line.replace(prefix, "") for line in excerpt]
    return excerpt


def _log_lines(path: Path) -> Iterator[str]:
    """The lines of a log, each cut to a bounded length, so any log is read in bounded memory."""
    with path.open("rb") as handle:
        while line := handle.readline(_MAX_LOG_LINE):
            if not line.endswith(b"\n"):
                while (rest := handle.readline(_MAX_LOG_LINE)) and not rest.endswith(b"\n"):
                    pass
            yield line.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------
# The profile's patch series in its YAML file (pure text edit)

_PATCHES_KEY = re.compile(r"^patches:(?P<rest>[^\n]*)$")


def _yaml_scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when YAML reads it back as the same string."""
    try:
        plain = yaml.safe_load(value)
    except yaml.YAMLError:
        plain = None
    return value if plain == value else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _entry_lines(dash: str, key: str, fields: dict[str, str]) -> str:
    lines = []
    for index, (name, value) in enumerate(fields.items()):
        lead = dash + "-" + " " * (len(key) - len(dash) - 1) if index == 0 else key
        lines.append(f"{lead}{name}: {_yaml_scalar(value)}\n")
    return "".join(lines)


def append_patch_entry(text: str, file: str, sha256: str, versions: str | None = None) -> str:
    """Add ``{file, sha256[, versions]}`` to the end of the top-level ``patches:`` of a profile's
    YAML text, keeping every other byte: comments, blank lines, the items' indentation.

    ``patches: []`` becomes a block; a missing ``patches:`` is added at the end. The result is
    checked by reading it back: the list must be the old one plus the new entry.

    >>> print(append_patch_entry("a: 1\\npatches: []  # none yet\\nb: 2\\n", "p/1.patch", "ab"), end="")
    a: 1
    patches:  # none yet
      - file: p/1.patch
        sha256: ab
    b: 2
    """
    fields = {"file": file, "sha256": sha256, **({"versions": versions} if versions else {})}
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    index = next((i for i, line in enumerate(lines) if _PATCHES_KEY.match(line.rstrip("\n"))), None)
    if index is None:
        new_lines = [*lines, "patches:\n", _entry_lines("  ", "    ", fields)]
    else:
        new_lines = _append_to_block(lines, index, fields)
    result = "".join(new_lines)
    _check_appended(text, result, fields)
    return result


def _append_to_block(lines: list[str], index: int, fields: dict[str, str]) -> list[str]:
    match = _PATCHES_KEY.match(lines[index].rstrip("\n"))
    assert match is not None
    rest = match["rest"]
    value, _, comment = rest.partition("#")
    value = value.strip()
    if value.startswith("["):
        if value != "[]":
            msg = (
                "patches: is a non-empty inline list; write it as a block list (- file: ...) first"
            )
            raise FixError(msg)
        head = "patches:" + (f"  #{comment}" if comment else "") + "\n"
        return [*lines[:index], head, _entry_lines("  ", "    ", fields), *lines[index + 1 :]]
    if value:
        msg = f"patches: has an unexpected value {value!r}; make it a list"
        raise FixError(msg)
    last = index
    dash, key = "  ", "    "
    seen_item = False
    for number in range(index + 1, len(lines)):
        line = lines[number]
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not line[0].isspace() and not seen_item):
            continue
        if line[0].isspace() or (stripped.startswith("- ") and line.startswith("-")):
            if stripped.startswith("#"):
                continue
            if stripped.startswith("- ") and not seen_item:
                seen_item = True
                dash = line[: len(line) - len(line.lstrip())]
                after_dash = line.lstrip()[1:]
                key = dash + " " + " " * (len(after_dash) - len(after_dash.lstrip()))
            last = number
            continue
        if stripped.startswith("#"):
            continue
        break
    return [*lines[: last + 1], _entry_lines(dash, key, fields), *lines[last + 1 :]]


def _check_appended(before: str, after: str, fields: dict[str, str]) -> None:
    old = (yaml.safe_load(before) or {}).get("patches") or []
    new = (yaml.safe_load(after) or {}).get("patches")
    if new != [*old, fields]:
        msg = "appending to patches: would not give the list plus the new entry; add it by hand"
        raise FixError(msg)


def defining_file(path: Path, configs: Path) -> Path:
    """The file of ``path``'s ``extends:`` chain whose ``patches:`` is in effect (the nearest
    that sets it), or ``path`` itself when none does."""
    current: Path | None = path
    while current is not None:
        data = load_located(current, str(current)).data
        if "patches" in data:
            return current
        parent = data.get("extends")
        if not isinstance(parent, str):
            break
        current = (configs if "/" in parent else current.parent) / f"{parent}.yaml"
    return path


# --------------------------------------------------------------------------------------------
# Making the fixes


@dataclass(frozen=True)
class WrittenPatch:
    """A patch ``--fix`` wrote and added to a profile's series."""

    rule: str
    deps: tuple[str, ...]
    headers: tuple[str, ...]  # the undeclared headers the new deps declare
    path: Path
    entry: str  # the path relative to patches/, as the profile lists it
    sha256: str
    profile_file: Path


@dataclass
class FixReport:
    """What one round of fixes did: patches written, findings left, advice."""

    patches: list[WrittenPatch] = field(default_factory=list)
    unfixed: list[tuple[Finding, str]] = field(default_factory=list)


def edit_build_file(
    build_file: Path, text: str, rule: str, deps: Sequence[str], buildozer: Path | None
) -> str:
    """The text of ``build_file`` (now ``text``) with ``deps`` added to ``rule``.

    With buildozer the edit is made on a copy in a temporary folder; buildozer also sorts and
    reorders, as buildifier would. Without it, ``add_deps`` edits the text.
    """
    _, package, name = split_label(rule)
    if buildozer is None:
        return add_deps(text, name, deps, package)
    with tempfile.TemporaryDirectory(prefix="tfwheels-buildozer-") as tmp:
        copy = Path(tmp) / package / build_file.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text, "utf-8")
        (Path(tmp) / "WORKSPACE").touch()
        target = f"{package}/{build_file.name}:{name}" if package else f"{build_file.name}:{name}"
        result = run([str(buildozer), f"add deps {' '.join(deps)}", target], cwd=tmp, check=False)
        if result.exit_code == _BUILDOZER_UNCHANGED:
            return text
        if result.exit_code != _BUILDOZER_CHANGED:
            msg = (
                f"buildozer could not add {', '.join(deps)} to {rule}: {_last_line(result.stderr)}"
            )
            raise (RuleNotFound if "not found" in result.stderr else FixError)(msg)
        return copy.read_text("utf-8")


def check_patch_applies(patch_text: str, path: str, before: str, after: str) -> None:
    """Apply the patch with ``patch -p1`` to a copy of ``before``; it must give ``after``."""
    with tempfile.TemporaryDirectory(prefix="tfwheels-fix-") as tmp:
        root = Path(tmp) / "tree"
        target = root / path
        target.parent.mkdir(parents=True)
        target.write_text(before, "utf-8")
        patch_file = Path(tmp) / "fix.patch"
        patch_file.write_text(patch_text, "utf-8")
        result = run(
            ["patch", "-p1", "--batch", "--silent", "-i", str(patch_file)],
            cwd=root,
            check=False,
            echo=False,
        )
        if not result.ok or target.read_text("utf-8") != after:
            msg = f"the generated patch for {path} does not reproduce the edit; nothing was written"
            raise FixError(msg)


class _Round:
    """One round of fixes: the BUILD texts as the patches written so far leave them."""

    def __init__(self, plan: Plan, profile_path: Path, log: Path) -> None:
        self.plan = plan
        self.profile_path = profile_path
        # The validated model (a plan keeps only plain facts of it): where patches go, and the
        # series the new one is appended to.
        self.profile = load_profile(
            str(profile_path), plan.profile.project, plan.layout.configs, plan.layout.root
        )
        self.log = log
        self.query = BazelQuery.for_plan(plan)
        self.texts: dict[Path, str] = {}
        self.buildozer = which("buildozer")
        self.report = FixReport()

    def fix_rule(self, rule: str, findings: list[UndeclaredInclusion]) -> None:
        """Find the owners of the rule's project headers and write one patch adding them.

        Headers without a single owner are reported; the others are still patched."""
        headers = [h for f in findings for h in f.headers if not is_toolchain_header(h)]
        owners: list[Ownership] = []
        for header in dict.fromkeys(headers):
            try:
                found = find_owner(self.query, header, rule)
            except FixError as exc:
                self.report.unfixed += [(f, str(exc)) for f in findings if header in f.headers]
                continue
            owners.append(found)
            err.print(
                f"fix: {escape(header)} is declared by {escape(found.owner.label)}",
                highlight=False,
            )
        if not owners:
            return
        build_file = build_file_of(self.plan.tree, rule)
        before = self.texts.get(build_file) or build_file.read_text("utf-8")
        deps = list(dict.fromkeys(relative_label(o.owner.label, rule) for o in owners))
        after = edit_build_file(build_file, before, rule, deps, self.buildozer)
        if after == before:
            msg = f"{rule} already depends on {', '.join(deps)}; the header check fails for another reason"
            raise FixError(msg)
        relative = build_file.relative_to(self.plan.tree).as_posix()
        diff = unified_diff(relative, before, after)
        check_patch_applies(diff, relative, before, after)
        error = error_excerpt(_log_lines(self.log), rule, self.plan.tree)
        text = patch_header(rule, owners, error) + diff
        written = self._write(rule, tuple(deps), tuple(o.header for o in owners), text)
        self.texts[build_file] = after
        self.report.patches.append(written)

    def _write(
        self, rule: str, deps: tuple[str, ...], headers: tuple[str, ...], text: str
    ) -> WrittenPatch:
        """Write the patch file and append it to the profile; undo both if the profile breaks."""
        layout, profile = self.plan.layout, self.profile
        folder = patch_folder(profile)
        name = patch_file_name(next_patch_number(layout.patches / folder), rule)
        path = layout.patches / folder / name
        entry = f"{folder}/{name}"
        write_atomic(path, text.encode("utf-8"))
        sha256 = file_sha256(path)
        yaml_file = defining_file(self.profile_path, layout.configs)
        # A fix appended to a shared base must not reach the base's other versions.
        versions = (
            None if yaml_file.resolve() == self.profile_path.resolve() else f"=={profile.version}"
        )
        old = yaml_file.read_text("utf-8")
        try:
            write_atomic(
                yaml_file, append_patch_entry(old, entry, sha256, versions).encode("utf-8")
            )
            reloaded = load_profile(
                str(self.profile_path), profile.project, layout.configs, layout.root
            )
            if entry not in [p.file for p in reloaded.active_patches()]:
                msg = f"{entry} is not in the reloaded profile's active patches"
                raise FixError(msg)
        except BaseException:
            write_atomic(yaml_file, old.encode("utf-8"))
            path.unlink(missing_ok=True)
            raise
        err.print(
            f"fix: wrote {escape(str(path))} (adds {escape(', '.join(deps))} to {escape(rule)}) "
            f"and added it to {escape(str(yaml_file))}",
            highlight=False,
        )
        return WrittenPatch(rule, deps, headers, path, entry, sha256, yaml_file)


def toolchain_advice(finding: UndeclaredInclusion) -> str:
    """What to do when every header of a finding is a compiler or SDK header: no patch."""
    return (
        f"{finding.rule}: every undeclared header is a compiler/SDK header, so this is the "
        f"toolchain, not a BUILD file; no patch was written. {finding.fix}"
    )


def fix_findings(
    findings: Sequence[Finding], plan: Plan, profile_path: Path, log: Path
) -> FixReport:
    """Write a patch for each rule with undeclared project headers; explain everything else."""
    fixes = _Round(plan, profile_path, log)
    by_rule: dict[str, list[UndeclaredInclusion]] = {}
    for finding in findings:
        if not isinstance(finding, UndeclaredInclusion):
            fixes.report.unfixed.append(
                (finding, "not an undeclared inclusion; --fix only patches those")
            )
        elif finding.toolchain:
            fixes.report.unfixed.append((finding, toolchain_advice(finding)))
        else:
            by_rule.setdefault(finding.rule, []).append(finding)
    for rule, rule_findings in by_rule.items():
        try:
            fixes.fix_rule(rule, rule_findings)
        except FixError as exc:
            for finding in rule_findings:
                fixes.report.unfixed.append((finding, str(exc)))
    return fixes.report


# --------------------------------------------------------------------------------------------
# The loop


def fixed_pairs(findings: Iterable[Finding]) -> set[tuple[str, str]]:
    """``(rule, header)`` of every project header in undeclared-inclusion findings."""
    return {
        (f.rule, h)
        for f in findings
        if isinstance(f, UndeclaredInclusion) and not f.toolchain
        for h in f.headers
        if not is_toolchain_header(h)
    }


def print_findings(findings: Sequence[Finding], reasons: Sequence[tuple[Finding, str]]) -> None:
    """Each finding with why --fix left it (when it tried) or the diagnosis's own fix."""
    why = {id(finding): reason for finding, reason in reasons}
    if not findings and not reasons:
        err.print("--fix: no known failure in the log; read its first ERROR line", highlight=False)
    for finding in [*findings, *(f for f, _ in reasons if f not in findings)]:
        err.print(
            f"[bold red]{escape(finding.kind)}[/bold red]: {escape(finding.message)}",
            highlight=False,
        )
        if id(finding) in why:
            err.print(f"  [yellow]not fixed:[/yellow] {escape(why[id(finding)])}", highlight=False)
        else:
            err.print(f"  [green]fix:[/green] {escape(finding.fix)}", highlight=False)


def _stopped(
    error: BuildError, round_number: int, reason: str, written: list[WrittenPatch]
) -> BuildError:
    kept = ""
    if written:
        kept = f"; the {len(written)} patch(es) it wrote stay in the profile: " + ", ".join(
            p.entry for p in written
        )
    msg = f"--fix stopped after round {round_number}: {reason}{kept}. Full log: {error.log}"
    return BuildError(msg, error.bazel_exit, error.log)


def _findings(error: BuildError) -> tuple[Path | None, list[Finding]]:
    log = Path(error.log) if error.log else None
    if log is None or not log.is_file():
        return None, []
    return log, diagnose_file(log)


def build_with_fixes(
    plan: Plan,
    execute: Callable[[Plan], BuildResult],
    *,
    profile_ref: str,
    options: BuildOptions,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    first: BuildError | None = None,
) -> BuildResult:
    """Build ``plan``; on undeclared inclusions patch the BUILD files and build again.

    Each round is one build (``execute``). After a failed one, ``fix_findings`` writes patches and
    appends them to the profile (``profile_ref``: the name or path the user gave); the profile is
    reloaded and a new plan made, whose patch stage applies the new patches. Stops with
    BuildError, after printing the findings, when a round writes no patch, when a header it fixed
    is reported again, or after ``max_rounds`` builds. Patches written before a stop stay.
    ``first``: how the first round failed, when the caller has built ``plan`` already.
    """
    from tfwheels.plan import make_plan  # plan imports much of tfwheels; keep this module light

    if max_rounds < 1:
        msg = f"--max-rounds must be at least 1, not {max_rounds}"
        raise UsageError(msg)
    profile_path = resolve_profile_path(plan.layout.configs, plan.profile.project, profile_ref)
    written: list[WrittenPatch] = []
    fixed: set[tuple[str, str]] = set()
    for round_number in range(1, max_rounds + 1):
        try:
            if round_number == 1 and first is not None:
                raise first
            result = execute(plan)
        except BuildError as exc:
            error = exc
        else:
            if written:
                names = ", ".join(p.entry for p in written)
                err.print(
                    f"[green]--fix: green with {len(written)} new patch(es):[/green] {escape(names)}"
                )
            return result
        log, findings = _findings(error)
        report = FixReport()
        if round_number == max_rounds:
            reason = f"--max-rounds {max_rounds} reached"
        elif again := fixed_pairs(findings) & fixed:
            reason = "the same undeclared inclusion came back in " + ", ".join(
                sorted({r for r, _ in again})
            )
        else:
            report = fix_findings(findings, plan, profile_path, log) if log else FixReport()
            reason = "no patch could be written for this failure"
        if not report.patches:
            print_findings(findings, report.unfixed)
            raise _stopped(error, round_number, reason, written) from None
        if report.unfixed:
            print_findings([], report.unfixed)
        written += report.patches
        fixed |= {(p.rule, header) for p in report.patches for header in p.headers}
        profile = load_profile(
            str(profile_path), plan.profile.project, plan.layout.configs, plan.layout.root
        )
        plan = _fresh_log(make_plan(profile, plan.layout, plan.tree, options))
        err.print(
            f"--fix: round {round_number + 1}: building again with {len(plan.series)} patch(es)"
        )
    raise AssertionError("unreachable: the last round returns or raises")


def _fresh_log(plan: Plan) -> Plan:
    """``plan`` with a log file of its own: logs are named by the second, and a round can follow
    the last within one (a no-op build); appending to its log would show its errors again."""
    path, number = plan.log_path, 1
    while path.exists():
        number += 1
        path = plan.log_path.with_name(f"{plan.log_path.stem}-{number}{plan.log_path.suffix}")
    return plan if path == plan.log_path else dataclasses.replace(plan, log_path=path)
