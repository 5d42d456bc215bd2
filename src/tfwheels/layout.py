"""Where tfwheels keeps things: the project's data folders and its build and dist folders."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


# What tfwheels keeps inside a source tree: the patch state (tfwheels.patches) and the like.
STATE_DIR = ".tfwheels"
STATE_FILE = "state.json"


@dataclass(frozen=True)
class Layout:
    """Paths of one tfwheels project checkout."""

    root: Path
    build: Path
    dist: Path

    @classmethod
    def at(cls, root: Path, build: Path | None = None, dist: Path | None = None) -> Layout:
        """The layout of the project at ``root``; build/ and dist/ default to folders in it."""
        root = root.resolve()
        return cls(
            root=root,
            build=(build or root / "build").resolve(),
            dist=(dist or root / "dist").resolve(),
        )

    @property
    def configs(self) -> Path:
        """YAML build profiles."""
        return self.root / "configs"

    @property
    def templates(self) -> Path:
        """Jinja2 templates of rendered files."""
        return self.root / "templates"

    @property
    def patches(self) -> Path:
        """Patch series, by project and version."""
        return self.root / "patches"

    @property
    def logs(self) -> Path:
        """Bazel logs, one per build, and latest.log."""
        return self.build / "logs"

    @property
    def sources(self) -> Path:
        """Working copies of source trees."""
        return self.build / "src"

    def wheelhouse(self, profile: str) -> Path:
        """Where a build's packaging step writes its wheels before they are collected."""
        return self.build / "wheelhouse" / profile

    def rejected(self) -> Path:
        """Wheels that failed verification, with their reports."""
        return self.build / "rejected"


def user_cache_dir(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """tfwheels' per-user cache folder: ``~/Library/Caches/tfwheels`` on macOS, else
    ``$XDG_CACHE_HOME/tfwheels`` (default ``~/.cache/tfwheels``), as bazelisk chooses its own.

    >>> user_cache_dir({"HOME": "/home/u"}, "linux")
    PosixPath('/home/u/.cache/tfwheels')
    >>> user_cache_dir({"HOME": "/Users/u"}, "darwin")
    PosixPath('/Users/u/Library/Caches/tfwheels')
    """
    env = os.environ if env is None else env
    platform = platform or sys.platform
    home = Path(env.get("HOME") or Path.home())
    if platform == "darwin":
        return home / "Library" / "Caches" / "tfwheels"
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".cache") / "tfwheels"
