"""Bazel's disk cache, repository cache, remote cache and remote execution, resolved once.

Settings come from four layers, later ones winning key by key (mappings such as ``headers``
merge, other values replace):

1. the fragment ``configs/remote/<name>.yaml`` that the profile's ``remote.config`` names;
2. the profile's own ``remote:`` section;
3. the fragment given with ``--remote-config NAME`` (a name under configs/remote/ or a path);
4. the command-line flags (``--remote-cache URL``, ``--no-disk-cache``, ...).

Credentials never sit in a profile: a header's value is ``env:NAME``, read from the environment
when the build starts, or a credential helper does the talking. The remote settings reach Bazel
through a private rc file (``--bazelrc``) that ``tfwheels.credentials`` writes for the length of
the Bazel command and removes afterwards; the disk and repository caches are plain flags.

Everything here is pure: it reads the environment and files, runs nothing, writes nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from tfwheels.errors import ProfileError, UsageError
from tfwheels.layout import user_cache_dir
from tfwheels.remote_options import RemoteOptions
from tfwheels.remote_plan import (
    DEFAULT_DISK_CACHE_MAX_GB,
    RcLine,
    RemotePlan,
    RemoteSettings,
    check_secrets,
    private_rc_path,
    redacted,
)
from tfwheels.yamlsafe import load_located

if TYPE_CHECKING:
    from tfwheels.profiles import Profile

CACHE_SCHEMES = ("http", "https", "grpc", "grpcs")
EXECUTOR_SCHEMES = ("grpc", "grpcs")
_ENV_REF = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)")
_MIN_SECRET = 8


# --- value checks ------------------------------------------------------------------------------


def _one_line(value: str) -> str:
    if any(c in value for c in "\n\r\0"):
        msg = "contains a newline or NUL, which would break out of an rc line; remove it"
        raise ValueError(msg)
    if value != value.strip() or not value:
        msg = f"{value!r} is empty or has spaces around it; remove them"
        raise ValueError(msg)
    return no_leading_dash(value)


def no_leading_dash(value: str) -> str:
    """``value``, or ValueError when it starts with '-' where a value, not a flag, is expected."""
    if value.startswith("-"):
        msg = f"{value!r} starts with '-' where a value is expected; it would be read as a flag"
        raise ValueError(msg)
    return value


def _url(value: str, schemes: tuple[str, ...], what: str) -> str:
    value = _one_line(value)
    parts = urlsplit(value)
    allowed = ", ".join(f"{s}://" for s in schemes)
    if parts.scheme not in schemes or not parts.hostname:
        msg = f"{value!r} is not a {what} URL; write one starting with {allowed} and a host"
        raise ValueError(msg)
    if parts.username or parts.password:
        msg = (
            "holds a user name or password; tfwheels echoes and logs URLs, so put the credential "
            "in an environment variable and name it in remote.headers (value env:NAME)"
        )
        raise ValueError(msg)
    if any(c.isspace() for c in value):
        msg = f"{value!r} contains white space; remove it"
        raise ValueError(msg)
    return value


def _cache_url(value: str) -> str:
    return _url(value, CACHE_SCHEMES, "remote cache")


def _executor_url(value: str) -> str:
    return _url(value, EXECUTOR_SCHEMES, "remote executor (gRPC)")


def _header_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value):
        msg = f"{value!r} is not an HTTP header name; use letters, digits and '-'"
        raise ValueError(msg)
    return value


def _env_ref(value: str) -> str:
    if not _ENV_REF.fullmatch(value):
        msg = (
            f"header values are credentials and must come from the environment: write env:NAME "
            f"(e.g. env:BUILDBUDDY_API_KEY) and export NAME, not {'the value itself' if value else 'an empty value'}"
        )
        raise ValueError(msg)
    return value


def _instance_name(value: str) -> str:
    no_leading_dash(value)
    if not re.fullmatch(r"[\w./-]+", value):
        msg = f"{value!r} is not an instance name; use letters, digits, '_', '-', '.', '/'"
        raise ValueError(msg)
    return value


def _property_name(value: str) -> str:
    no_leading_dash(value)
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", value):
        msg = f"{value!r} is not a platform property name; use letters, digits and _ . : -"
        raise ValueError(msg)
    return value


def _helper(value: str) -> str:
    value = _one_line(value)
    if any(c.isspace() for c in value):
        msg = f"{value!r} contains white space; give [scope=]path to the helper program"
        raise ValueError(msg)
    return value


def _local_path(value: str) -> str:
    return _one_line(value)


def _fragment_name(value: str) -> str:
    if not re.fullmatch(r"[\w.+-]+", value):
        msg = f"{value!r} is not a name of a file in configs/remote/; give it without .yaml"
        raise ValueError(msg)
    return value


CacheUrl = Annotated[str, AfterValidator(_cache_url)]
ExecutorUrl = Annotated[str, AfterValidator(_executor_url)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
EnvRef = Annotated[str, AfterValidator(_env_ref)]
InstanceName = Annotated[str, AfterValidator(_instance_name)]
PropertyName = Annotated[str, AfterValidator(_property_name)]
PropertyValue = Annotated[str, AfterValidator(_one_line)]
HelperSpec = Annotated[str, AfterValidator(_helper)]
LocalPath = Annotated[str, AfterValidator(_local_path)]
FragmentName = Annotated[str, AfterValidator(_fragment_name)]


# --- the models --------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiskCacheSpec(_Model):
    """Bazel's --disk_cache: action results shared by every workspace of this user."""

    enabled: bool = True
    path: LocalPath | None = Field(
        default=None,
        description="Folder of the cache; default ~/.cache/tfwheels/disk-cache on Linux "
        "($XDG_CACHE_HOME respected), ~/Library/Caches/tfwheels/disk-cache on macOS.",
    )
    max_gb: float = Field(
        default=DEFAULT_DISK_CACHE_MAX_GB,
        gt=0,
        description="Warn after a build when the cache is larger than this many GB "
        "(Bazel before 7 never trims it).",
    )


class RemoteSpec(_Model):
    """The ``remote:`` section of a profile, or of a fragment in configs/remote/."""

    config: FragmentName | None = Field(
        default=None,
        description="A fragment in configs/remote/ (name without .yaml) that this section "
        "overrides key by key.",
    )
    disk_cache: DiskCacheSpec = DiskCacheSpec()
    repository_cache: LocalPath | None = Field(
        default=None,
        description="Bazel's --repository_cache (downloaded archives); default: Bazel's own, "
        "already shared by every workspace of this user.",
    )
    cache: CacheUrl | None = Field(
        default=None, description="--remote_cache: http://, https://, grpc:// or grpcs://."
    )
    executor: ExecutorUrl | None = Field(
        default=None, description="--remote_executor: grpc:// or grpcs://."
    )
    instance_name: InstanceName | None = None
    platform: dict[PropertyName, PropertyValue] = Field(
        default_factory=dict,
        description="Platform properties for remote execution (--remote_default_exec_properties).",
    )
    upload: bool = Field(
        default=True, description="Upload locally built results (--remote_upload_local_results)."
    )
    compression: bool = Field(
        default=False,
        description="zstd over gRPC (Bazel >= 5); skipped with a warning where unsupported.",
    )
    local_fallback: bool = Field(
        default=False,
        description="Build locally when the remote cache or executor cannot be reached or "
        "refuses the credential, instead of stopping.",
    )
    headers: dict[HeaderName, EnvRef] = Field(
        default_factory=dict,
        description="HTTP/gRPC headers sent on every remote request; values are env:NAME.",
    )
    credential_helper: HelperSpec | None = Field(
        default=None,
        description="[scope=]path of a credential helper (Bazel >= 6; refused for older).",
    )


# --- command-line options and fragments --------------------------------------------------------


_FLAG_OF = {
    "disk_cache.path": "--disk-cache",
    "disk_cache.max_gb": "--disk-cache-max-gb",
    "repository_cache": "--repository-cache",
    "cache": "--remote-cache",
    "executor": "--remote-executor",
    "instance_name": "--remote-instance",
}


def fragment_path(configs: Path, name: str) -> Path:
    """``configs/remote/<name>.yaml``, or ``name`` itself when it is a path to a YAML file."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name)
    else:
        path = configs / "remote" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (configs / "remote").glob("*.yaml"))
        msg = f"no remote config {name!r} ({path} is missing); available: {', '.join(known) or 'none'}"
        raise UsageError(msg)
    return path


def load_fragment(configs: Path, name: str) -> tuple[dict[str, Any], dict[tuple[Any, ...], int], str]:
    """A fragment's ``remote:`` mapping, the line of each value, and the file name to show."""
    path = fragment_path(configs, name)
    located = load_located(path, _display(path, configs.parent))
    extra = sorted(set(located.data) - {"remote"})
    if extra or not isinstance(located.data.get("remote"), dict):
        line = located.lines.get((extra[0],), 1) if extra else 1
        msg = f"{located.file}:{line} a remote config holds one key, remote:, with its settings under it"
        raise ProfileError(msg)
    return located.data["remote"], located.lines, located.file


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _validate(data: dict[str, Any], where: str, lines: Mapping[tuple[Any, ...], int] | None) -> RemoteSpec:
    try:
        return RemoteSpec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        field_name = ".".join(str(p) for p in loc)
        problem = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            problem = f"is not a known field; known: {', '.join(_known(loc[:-1]))}"
        if lines is None:
            flag = _FLAG_OF.get(field_name) or (
                "--remote-platform" if loc[:1] == ("platform",) else f"remote.{field_name}"
            )
            msg = f"{flag} {error.get('input')!r}: {problem}"
            raise UsageError(msg) from None
        paths = [("remote",) + tuple(loc[:n]) for n in range(len(loc), -1, -1)]
        line = next((lines[path] for path in paths if path in lines), 1)
        msg = f"{where}:{line} remote.{field_name}: {problem}"
        raise ProfileError(msg) from None


def _known(loc: tuple[Any, ...]) -> list[str]:
    model: Any = RemoteSpec
    for part in loc:
        info = model.model_fields.get(part)
        model = info.annotation if info else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


def _anchored(data: dict[str, Any], folder: Path | None) -> dict[str, Any]:
    """``data`` with a relative disk_cache.path / repository_cache made absolute under ``folder``
    (the folder of the file that wrote them, not wherever the build was started)."""
    if folder is None:
        return data

    def absolute(value: Any) -> Any:
        if not isinstance(value, str) or not value or value.startswith("-"):
            return value  # the validator refuses what is not a path
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else folder.absolute() / path)

    data = dict(data)
    if "repository_cache" in data:
        data["repository_cache"] = absolute(data["repository_cache"])
    disk = data.get("disk_cache")
    if isinstance(disk, Mapping) and "path" in disk:
        data["disk_cache"] = {**disk, "path": absolute(disk["path"])}
    return data


def _fragment_layer(configs: Path, name: str) -> dict[str, Any]:
    fragment, lines, file = load_fragment(configs, name)
    _validate(fragment, file, lines)
    return _anchored(fragment, fragment_path(configs, name).parent)


def effective_spec(
    profile_spec: RemoteSpec, options: RemoteOptions, configs: Path, *, profile_dir: Path | None = None
) -> RemoteSpec:
    """Merge the four layers (see the module docstring) into one validated RemoteSpec.

    Relative cache paths of a fragment or the profile are taken from that file's folder
    (``profile_dir`` for the profile); those of the command line from the current folder.
    """
    data: dict[str, Any] = {}
    if profile_spec.config:
        data = _merge(data, _fragment_layer(configs, profile_spec.config))
    own = profile_spec.model_dump(exclude_unset=True, exclude={"config"})
    data = _merge(data, _anchored(own, profile_dir))
    if options.config:
        data = _merge(data, _fragment_layer(configs, options.config))
    data.pop("config", None)
    return _validate(_merge(data, options.fragment()), "command line", None)


# --- where things live -------------------------------------------------------------------------




# --- the resolved settings ---------------------------------------------------------------------


def _version_tuple(version: str | None) -> tuple[int, int]:
    """``(major, minor)`` of a Bazel version; (0, 0) when unknown.

    >>> _version_tuple("7.4.1"), _version_tuple("6.0.0-pre.20220101"), _version_tuple(None)
    ((7, 4), (6, 0), (0, 0))
    """
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _disk_cache(spec: DiskCacheSpec, env: Mapping[str, str]) -> Path | None:
    if not spec.enabled:
        return None
    if spec.path:
        return Path(os.path.expanduser(spec.path)).absolute()
    return user_cache_dir(env) / "disk-cache"


def _compression_line(
    spec: RemoteSpec, version: tuple[int, int], bazel: str | None
) -> tuple[list[RcLine], list[str]]:
    if not spec.compression:
        return [], []
    grpc = (spec.cache or spec.executor or "").startswith("grpc")
    if not grpc:
        warning = f"remote.compression: Bazel compresses only gRPC cache traffic; skipped for {spec.cache}"
        return [], [warning]
    if version < (5, 0):
        warning = (
            f"remote.compression: Bazel {bazel or 'of unknown version'} has no cache compression "
            "(it came in Bazel 5.0); skipped"
        )
        return [], [warning]
    name = "--remote_cache_compression" if version >= (7, 0) else "--experimental_remote_cache_compression"
    return [RcLine(name)], []


def _helper_line(spec: RemoteSpec, version: tuple[int, int], bazel: str | None) -> RcLine | None:
    if not spec.credential_helper:
        return None
    if version < (6, 0):
        msg = (
            f"remote.credential_helper needs Bazel 6 or newer (--experimental_credential_helper), "
            f"but this build uses Bazel {bazel or 'of unknown version'}; pass the credential "
            "with remote.headers (value env:NAME) instead"
        )
        raise UsageError(msg)
    name = "--credential_helper" if version >= (7, 0) else "--experimental_credential_helper"
    return RcLine(f"{name}={spec.credential_helper}")


def _remote_lines(spec: RemoteSpec, version: tuple[int, int], bazel: str | None) -> tuple[list[RcLine], list[str]]:
    lines: list[RcLine] = []
    warnings: list[str] = []
    if spec.cache:
        lines.append(RcLine(f"--remote_cache={spec.cache}"))
    if spec.executor:
        lines.append(RcLine(f"--remote_executor={spec.executor}"))
        lines.append(RcLine(f"--{'' if spec.local_fallback else 'no'}remote_local_fallback"))
    if spec.instance_name:
        lines.append(RcLine(f"--remote_instance_name={spec.instance_name}"))
    for name, value in sorted(spec.platform.items()):
        lines.append(RcLine(f"--remote_default_exec_properties={name}={value}"))
    if spec.platform and not spec.executor:
        warnings.append("remote.platform is used only for remote execution; set remote.executor")
    lines.append(RcLine(f"--remote_upload_local_results={'true' if spec.upload else 'false'}"))
    compression, more = _compression_line(spec, version, bazel)
    lines += compression
    warnings += more
    helper = _helper_line(spec, version, bazel)
    if helper:
        lines.append(helper)
    for name, ref in sorted(spec.headers.items()):
        lines.append(RcLine(f"--remote_header={name}=", env=ref.removeprefix("env:")))
    return lines, warnings


def _settings(spec: RemoteSpec) -> RemoteSettings:
    return RemoteSettings(
        cache=spec.cache,
        executor=spec.executor,
        instance_name=spec.instance_name,
        platform=dict(sorted(spec.platform.items())),
        upload=spec.upload,
        local_fallback=spec.local_fallback,
        headers=dict(sorted(spec.headers.items())),
        credential_helper=spec.credential_helper,
        disk_cache_max_gb=spec.disk_cache.max_gb,
    )


def resolve_remote(
    profile: Profile,
    options: RemoteOptions,
    configs: Path,
    bazel_version: str | None,
    *,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
) -> RemotePlan:
    """Turn the profile's ``remote:`` section and the flags into flags and a private rc plan.

    Problems that would stop a build stop it here, before Bazel starts; with ``dry_run`` they
    become warnings so the plan can still be shown.
    """
    env = os.environ if env is None else env
    shown = configs.parent / profile.file if profile.file else None  # the file, as profiles shows it
    profile_dir = shown.parent if shown is not None and shown.is_file() else None
    spec = effective_spec(profile.remote, options, configs, profile_dir=profile_dir)
    version = _version_tuple(bazel_version)
    warnings: list[str] = []
    disk = _disk_cache(spec.disk_cache, env)
    repo = Path(os.path.expanduser(spec.repository_cache)).absolute() if spec.repository_cache else None
    flags = [f"--disk_cache={disk}"] if disk else []
    if repo:
        flags.append(f"--repository_cache={repo}")
    lines: list[RcLine] = []
    if spec.cache or spec.executor:
        try:
            lines, more = _remote_lines(spec, version, bazel_version)
            warnings += more
        except UsageError as exc:
            if not dry_run:
                raise
            warnings.append(str(exc))
    elif spec.headers or spec.credential_helper:
        warnings.append("remote.headers/credential_helper are set but no remote.cache or "
                        "remote.executor; they are not used")
    plan = RemotePlan(
        settings=_settings(spec),
        disk_cache=disk,
        repository_cache=repo,
        rc_path=private_rc_path(env) if lines else None,
        rc_lines=tuple(lines),
        flags=tuple(flags),
        bazel_version=bazel_version,
    )
    try:
        values = check_secrets(plan, env)
    except UsageError as exc:
        if not dry_run:
            raise
        warnings.append(str(exc))
        values = {}
    warnings += [
        f"{name} is only {len(value)} characters; short credentials are scrubbed from every log "
        "line and may blank out ordinary text"
        for name, value in values.items()
        if len(value) < _MIN_SECRET
    ]
    return replace(plan, warnings=tuple(warnings))


__all__ = [
    "DiskCacheSpec",
    "RcLine",
    "RemoteOptions",
    "RemotePlan",
    "RemoteSettings",
    "RemoteSpec",
    "check_secrets",
    "effective_spec",
    "private_rc_path",
    "redacted",
    "resolve_remote",
    "user_cache_dir",
]
