"""The problems wheel verification reports: a fixed set of kinds, the contract with reports and CI.

Kept apart from :mod:`tfwheels.verify` so the modules that find problems beside it (code
signatures, dependencies, pip's resolver) can make them without importing the verifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ProblemKind = Literal[
    "tag-mismatch",
    "arch-mismatch",
    "min-os",
    "external-library",
    "glibc",
    "zip-integrity",
    "unsafe-path",
    "record-mismatch",
    "metadata",
    "malformed-binary",
    "code-signature",
    "dependency-mismatch",
    "unresolvable",
    "smoke-test",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a wheel; ``file`` is the member concerned, None for the whole wheel."""

    kind: ProblemKind
    file: str | None
    detail: str

    def to_json(self) -> dict[str, str | None]:
        """The problem as the report's JSON object."""
        return {"kind": self.kind, "file": self.file, "detail": self.detail}
