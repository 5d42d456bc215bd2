"""One hierarchy for every error a user can meet, each with its own exit code.

Library code raises these; ``tasks.py`` turns them into ``invoke.Exit`` in one place, so users see
one line, never a traceback.
"""

from __future__ import annotations


class TfwheelsError(Exception):
    """Base class: a failure tfwheels can explain in one line."""

    exit_code: int = 1


class UsageError(TfwheelsError):
    """Bad input from the user: a flag, a path, a file that is not what it should be."""

    exit_code = 2


class ProfileError(UsageError):
    """A build profile is invalid. The message names file, line, field and the fix."""


class PatchError(TfwheelsError):
    """A patch series cannot be applied or reverted; the tree is left as it was."""

    exit_code = 3


class ToolMissingError(TfwheelsError):
    """A required external tool (bazel, git, patch) is missing or the wrong version."""

    exit_code = 4


class BuildError(TfwheelsError):
    """Bazel failed. ``bazel_exit`` keeps Bazel's own exit status."""

    def __init__(self, message: str, bazel_exit: int = 1, log: str | None = None) -> None:
        super().__init__(message)
        self.bazel_exit = bazel_exit
        self.log = log
        self.exit_code = bazel_exit if bazel_exit else 1


class WheelError(TfwheelsError):
    """A wheel failed verification or could not be collected."""

    exit_code = 1


class InterruptedRun(TfwheelsError):
    """The run was stopped by a signal; exit code is 128 + signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
