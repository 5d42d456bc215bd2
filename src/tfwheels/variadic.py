"""Let an invoke task take several positional arguments (``invoke verify-wheel A.whl B.whl``).

invoke gives each positional parameter one token and reads any further bare token as the next
task's name ("No idea what 'B.whl' is!"). Before invoke parses the task part of the command
line, each bare token after such a task becomes a repetition of its iterable flag
(``--wheel A.whl --wheel B.whl``); flags and their values are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from invoke.parser import Parser


@dataclass(frozen=True)
class Variadic:
    """A task whose bare arguments go to ``flag``; ``valued`` are its flags that take a value."""

    flag: str
    valued: frozenset[str]


def expand(argv: Sequence[str], tasks: Mapping[str, Variadic], task_names: frozenset[str]) -> list[str]:
    """Rewrite bare tokens after a variadic task into its flag.

    >>> spec = {"verify-wheel": Variadic("--wheel", frozenset({"--target", "-t"}))}
    >>> expand(["verify-wheel", "a.whl", "--target", "x", "b.whl", "--json"], spec, frozenset({"verify-wheel"}))
    ['verify-wheel', '--wheel', 'a.whl', '--target', 'x', '--wheel', 'b.whl', '--json']
    """
    result: list[str] = []
    current: Variadic | None = None
    expects_value = False
    for token in argv:
        if token in task_names:
            current, expects_value = tasks.get(token), False
            result.append(token)
        elif current is None or expects_value:
            result.append(token)
            expects_value = False
        elif token.startswith("-"):
            result.append(token)
            expects_value = token in current.valued and "=" not in token
        else:
            result += [current.flag, token]
    return result


def install(tasks: Mapping[str, Variadic]) -> None:
    """Make invoke's parser expand these tasks' bare arguments (idempotent)."""
    if getattr(Parser.parse_argv, "_tfwheels_variadic", False):
        return
    original = Parser.parse_argv

    def parse_argv(self: Parser, argv: list[str]):  # type: ignore[no-untyped-def]
        names = frozenset(
            name for context in self.contexts.values() for name in (context.name, *context.aliases)
        )
        return original(self, expand(argv, tasks, names))

    parse_argv._tfwheels_variadic = True  # type: ignore[attr-defined]
    Parser.parse_argv = parse_argv  # type: ignore[method-assign]
