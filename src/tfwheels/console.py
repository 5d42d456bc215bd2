"""The two consoles: results on stdout (``out``), progress and errors on stderr (``err``).

Each is made on first use, so that a rebuild can start its Bazel before rich is even loaded
(tfwheels.early); ``from tfwheels.console import err`` makes it then.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    out: Console
    err: Console


def _plain() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("NO_COLOR") is not None


def __getattr__(name: str) -> Any:
    if name not in ("out", "err"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from rich.console import Console

    # emoji off: a Bazel label such as //pkg:smoke:test must print as written.
    made = Console(stderr=name == "err", soft_wrap=True, no_color=_plain(), emoji=False)
    globals()[name] = made
    return made
