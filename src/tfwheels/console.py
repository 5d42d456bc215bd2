"""The two consoles: results on stdout, progress and errors on stderr."""

from __future__ import annotations

import os

from rich.console import Console


def _plain() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("NO_COLOR") is not None


out = Console(soft_wrap=True, no_color=_plain())
err = Console(stderr=True, soft_wrap=True, no_color=_plain())
