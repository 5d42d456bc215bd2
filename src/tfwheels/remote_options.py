"""The cache and remote flags of ``invoke build-tf``/``build-tff``, as given (tfwheels.remote
checks and resolves them). Kept apart from tfwheels.remote so that parsing a command line loads
no validation library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfwheels.errors import UsageError


@dataclass(frozen=True)
class RemoteOptions:
    """What the build command line says about caches and remote execution (raw, unchecked)."""

    config: str | None = None
    disk_cache: str | None = None
    no_disk_cache: bool = False
    disk_cache_max_gb: str | float | None = None
    repository_cache: str | None = None
    cache: str | None = None
    executor: str | None = None
    instance_name: str | None = None
    no_upload: bool = False
    compression: bool = False
    local_fallback: bool = False
    platform: tuple[str, ...] = ()  # --remote-platform KEY=VALUE, repeatable

    def fragment(self) -> dict[str, Any]:
        """The flags as a ``remote:`` mapping holding only what was given."""
        data: dict[str, Any] = {}
        disk: dict[str, Any] = {}
        if self.disk_cache:
            disk.update(enabled=True, path=_cwd_path(self.disk_cache))
        if self.no_disk_cache:
            disk["enabled"] = False
        if self.disk_cache_max_gb is not None:
            disk["max_gb"] = self.disk_cache_max_gb
        if disk:
            data["disk_cache"] = disk
        if self.repository_cache:
            data["repository_cache"] = _cwd_path(self.repository_cache)
        for key in ("cache", "executor", "instance_name"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        if self.no_upload:
            data["upload"] = False
        if self.compression:
            data["compression"] = True
        if self.local_fallback:
            data["local_fallback"] = True
        if self.platform:
            data["platform"] = _platform_pairs(self.platform)
        return data


def _platform_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("OSFamily=Linux", ...)`` as a mapping; UsageError for an item without ``=``."""
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            msg = f"--remote-platform {pair!r}: give KEY=VALUE, e.g. --remote-platform OSFamily=Linux"
            raise UsageError(msg)
        result[name] = value
    return result


def _cwd_path(value: str) -> str:
    """A command-line folder made absolute from the current folder; a leading '-' is kept so
    the validator refuses it (``--disk-cache=--x`` is a mistyped flag, not a folder)."""
    return value if value.startswith("-") else str(Path(value).expanduser().absolute())
