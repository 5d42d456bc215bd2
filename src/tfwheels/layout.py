"""Where tfwheels keeps things: the project's data folders and its build and dist folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
