"""A build's resolved cache and remote settings, as plain data (tfwheels.remote resolves them).

Kept apart from the pydantic ``remote:`` models so that a plan holds no model object and a
rebuild can take up a saved plan without importing pydantic (tfwheels.early).
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfwheels.errors import UsageError

DEFAULT_DISK_CACHE_MAX_GB = 50.0


def redacted(env_name: str) -> str:
    """How a secret from ``env_name`` is shown wherever it would otherwise appear."""
    return f"<redacted:env:{env_name}>"


@dataclass(frozen=True)
class RcLine:
    """One ``build`` line of the private rc file; ``env`` names the variable holding its secret."""

    option: str
    env: str | None = None

    def render(self, values: Mapping[str, str] | None) -> str:
        """The line, with the secret filled in from ``values`` or shown redacted without them."""
        if self.env is None:
            return f"build {self.option}"
        secret = values[self.env] if values is not None else redacted(self.env)
        return f"build {self.option}{_rc_quote(secret) if values is not None else secret}"


def _rc_quote(text: str) -> str:
    if re.fullmatch(r"[\w@%+=:,./~-]*", text):
        return text
    return "'" + text.replace("'", "'\"'\"'") + "'"


@dataclass(frozen=True)
class RemoteSettings:
    """The merged ``remote:`` settings a build reads after planning; headers as ``env:NAME``."""

    cache: str | None = None
    executor: str | None = None
    instance_name: str | None = None
    platform: dict[str, str] = field(default_factory=dict)
    upload: bool = True
    local_fallback: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    credential_helper: str | None = None
    disk_cache_max_gb: float = DEFAULT_DISK_CACHE_MAX_GB


@dataclass(frozen=True)
class RemotePlan:
    """What a build does about caches and remote execution, with secrets only as names."""

    settings: RemoteSettings = field(default_factory=RemoteSettings)
    disk_cache: Path | None = None
    repository_cache: Path | None = None
    rc_path: Path | None = None
    rc_lines: tuple[RcLine, ...] = ()
    flags: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    bazel_version: str | None = None

    @property
    def startup(self) -> list[str]:
        """Startup options: the private rc file, when there is one."""
        return [f"--bazelrc={self.rc_path}"] if self.rc_path else []

    @property
    def secret_env(self) -> tuple[str, ...]:
        """The environment variables whose values are credentials."""
        return tuple(sorted({line.env for line in self.rc_lines if line.env}))

    @property
    def remote_url(self) -> str | None:
        """The remote cache (or, without one, the executor) Bazel talks to."""
        return self.settings.cache or self.settings.executor

    def rc_text(self, values: Mapping[str, str] | None, *, local_only: bool = False) -> str:
        """The private rc file; ``local_only`` keeps the remote settings out (local fallback)."""
        head = "# Written by tfwheels for one Bazel command and removed after it. Do not copy.\n"
        if local_only:
            return head + "# The remote cache was unreachable or refused us: building locally.\n"
        return head + "".join(line.render(values) + "\n" for line in self.rc_lines)

    def to_json(self) -> dict[str, Any]:
        """The settings for ``--dry-run --json``: credentials as ``<redacted:env:NAME>``."""
        settings = self.settings
        return {
            "disk_cache": str(self.disk_cache) if self.disk_cache else None,
            "disk_cache_max_gb": settings.disk_cache_max_gb,
            "repository_cache": str(self.repository_cache) if self.repository_cache else None,
            "cache": settings.cache,
            "executor": settings.executor,
            "instance_name": settings.instance_name,
            "platform": dict(sorted(settings.platform.items())),
            "upload": settings.upload,
            "compression": any("compression" in line.option for line in self.rc_lines),
            "local_fallback": settings.local_fallback,
            "headers": {
                name: redacted(ref.removeprefix("env:")) for name, ref in sorted(settings.headers.items())
            },
            "credential_helper": settings.credential_helper,
            "rc_file": str(self.rc_path) if self.rc_path else None,
            "rc": [line.render(None) for line in self.rc_lines],
        }


def check_secrets(plan: RemotePlan, env: Mapping[str, str]) -> dict[str, str]:
    """The value of every credential variable; UsageError (exit 2) naming the first missing one."""
    values: dict[str, str] = {}
    for line in plan.rc_lines:
        if line.env is None:
            continue
        value = env.get(line.env, "")
        header = line.option.removeprefix("--remote_header=").rstrip("=")
        if not value:
            msg = (
                f"environment variable {line.env} is not set (remote.headers.{header} reads it); "
                f"export {line.env}=<your credential> or remove the header"
            )
            raise UsageError(msg)
        if any(c in value for c in "\n\r\0"):
            msg = f"environment variable {line.env} holds a newline or NUL; set it to the bare credential"
            raise UsageError(msg)
        values[line.env] = value
    return values


# The credentials folder: ``tfwheels-<pid of the build>-<16 hex digits>``; the pid lets the next
# build sweep the folder of one killed with SIGKILL (tfwheels.credentials.sweep_stale).
STALE_NAME = re.compile(r"tfwheels-(\d+)-[0-9a-f]{16}")


def rc_folders(env: Mapping[str, str] | None = None) -> list[Path]:
    """The folders a credentials rc may be put in, preferred first."""
    env = os.environ if env is None else env
    candidates = [env.get("XDG_RUNTIME_DIR"), "/dev/shm", tempfile.gettempdir()]
    return [Path(f) for f in dict.fromkeys(c for c in candidates if c) if os.path.isdir(f)]


def private_rc_path(env: Mapping[str, str] | None = None) -> Path:
    """A fresh, unguessable path for the credentials rc file, in memory-backed storage if any.

    The folder does not exist yet: ``tfwheels.credentials`` creates it with mode 0700 and fails
    if something is already there. ``$XDG_RUNTIME_DIR`` (a per-user tmpfs) is preferred, then
    ``/dev/shm``, then the user's temp folder (private per user on macOS).
    """
    name = f"tfwheels-{os.getpid()}-{secrets.token_hex(8)}"
    for folder in rc_folders(env):
        if os.access(folder, os.W_OK | os.X_OK):
            return folder / name / "remote.bazelrc"
    return Path(tempfile.gettempdir()) / name / "remote.bazelrc"
