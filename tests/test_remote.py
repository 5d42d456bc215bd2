"""Disk and remote caches, remote settings and credentials, on real servers on 127.0.0.1.

The integration tests build the example TF workspace with Debian's Bazel 4.2.3 from fresh copies
and fresh output bases (inside tmp_path, so every file Bazel writes can be scanned), against nginx
as a WebDAV HTTP cache and BuildGrid as a gRPC cache, both started and stopped here
(tests/servers.py). A random canary credential must never land in any file or output.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, FixedProject, copy_example, invoke, requires_bazel
from servers import BUILDGRID_HINT, buildgrid_cache, find_bgd, find_nginx, free_port, nginx_cache

from tfwheels.credentials import (
    RemoteError,
    disk_cache_size,
    disk_cache_warning,
    explain_trouble,
    local_retry_warranted,
    log_lines_since,
    preflight,
    probe_http,
    probe_tcp,
    remove_private,
    sweep_stale,
    use_local_only,
    write_private,
)
from tfwheels.errors import ProfileError, UsageError
from tfwheels.profiles import load_profile
from tfwheels.redact import Redactor, mask_in_place, redactor, scrub_file
from tfwheels.remote import (
    RemoteOptions,
    effective_spec,
    private_rc_path,
    resolve_remote,
    user_cache_dir,
)

CONFIGS = ROOT / "configs"
CANARY = f"tfw-canary-{secrets.token_hex(12)}"
KEY_VAR = "TFW_TEST_CACHE_KEY"

requires_nginx = pytest.mark.skipif(
    find_nginx() is None and not os.environ.get("CI"), reason="nginx not installed (CI installs it)"
)


# --- helpers ----------------------------------------------------------------------------------


def example_profile(folder: Path, name: str, remote: dict[str, Any] | None = None, *,
                    output_base: Path | None = None, extra: dict[str, Any] | None = None) -> Path:
    """A profile extending tf/example, with its own output base and ``remote:`` section."""
    data: dict[str, Any] = {"extends": "tf/example"}
    if output_base is not None:
        data["bazel"] = {"startup_flags": [f"--output_base={output_base}"]}
    if remote is not None:
        data["remote"] = remote
    data.update(extra or {})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def standalone_profile(folder: Path, remote: dict[str, Any]) -> Path:
    """A complete profile (no extends) in ``folder/tf/p.yaml`` with a ``remote:`` section."""
    data = {
        "project": "tensorflow",
        "version": "2.16.1",
        "platform": "linux_x86_64",
        "source": {"path": "src"},
        "bazel": {"version": "6.5.0", "targets": ["//tensorflow/tools/pip_package:build_pip_package"]},
        "package": {"kind": "script", "script": "bazel-bin/x", "args": ["%output%"]},
        "wheel": {"distribution": "tensorflow"},
        "remote": remote,
    }
    path = folder / "tf" / "p.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def profile_error(tmp_path: Path, remote: dict[str, Any]) -> str:
    standalone_profile(tmp_path, remote)
    with pytest.raises(ProfileError) as info:
        load_profile("p", "tensorflow", tmp_path, tmp_path)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def env_for(base: Path, project: Path | None = None, **extra: str) -> dict[str, str]:
    """Private build/, dist/, runtime dir (where the credentials rc goes) and cache home;
    ``project``: the TFWHEELS_PROJECT whose example builds (conftest's ``fixed_example``)."""
    run_dir = base / "run"
    run_dir.mkdir(mode=0o700, exist_ok=True)
    return {
        "TFWHEELS_BUILD": str(base / "build"),
        "TFWHEELS_DIST": str(base / "dist"),
        "XDG_RUNTIME_DIR": str(run_dir),
        "XDG_CACHE_HOME": str(base / "cache-home"),
        **({"TFWHEELS_PROJECT": str(project)} if project else {}),
        **extra,
    }


def shutdown(tree: Path) -> None:
    """Stop the Bazel server of ``tree`` (its .bazelrc.user names the output base)."""
    bazel = shutil.which("bazel-4") or shutil.which("bazel") or "bazel"
    subprocess.run([bazel, "shutdown"], cwd=tree, check=False, capture_output=True, timeout=120)


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every regular file under ``root`` (symlinks not followed) whose bytes contain ``needle``."""
    found: list[Path] = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if path.is_symlink() or not path.is_file():
                continue
            try:
                if needle in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def non_internal(processes: dict[str, int]) -> int:
    return processes.get("total", 0) - processes.get("internal", 0)


@dataclass
class Build:
    """One `invoke build-tf --json` run."""

    tree: Path
    result: subprocess.CompletedProcess[str]

    @property
    def summary(self) -> dict[str, Any]:
        assert self.result.returncode == 0, self.result.stderr[-3000:]
        return json.loads(self.result.stdout)


def build(base: Path, name: str, remote: dict[str, Any] | None, env: dict[str, str], *args: str,
          extra: dict[str, Any] | None = None, tree: Path | None = None) -> Build:
    """Build the example from a fresh copy and a fresh output base under ``base``."""
    tree = tree or copy_example("tf-mini", base / f"tree-{name}")
    profile = example_profile(base, name, remote, output_base=base / f"output-base-{name}", extra=extra)
    try:
        result = invoke("build-tf", "--profile", str(profile), "--source", str(tree), "--json", *args, env=env)
    finally:
        shutdown(tree)
    return Build(tree, result)


@pytest.fixture(autouse=True)
def _forget_secrets() -> Any:
    """Tests that register secrets in this process do not leak them into the next test."""
    yield
    redactor.clear()


# --- the remote: section and the command line --------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ({"cache": "ftp://cache.example"}, "remote.cache: 'ftp://cache.example' is not a remote cache URL"),
        ({"executor": "https://x.example"}, "remote.executor: 'https://x.example' is not a remote executor (gRPC) URL"),
        ({"cache": "https://me:pw@cache.example"}, "remote.cache: holds a user name or password"),
        ({"cache": "grpcs://c.example", "headers": {"x-api-key": "s3cr3t"}}, "remote.headers.x-api-key: header values are credentials"),
        ({"headers": {"bad header": "env:K"}}, "remote.headers: key 'bad header' is not allowed"),
        ({"cach": "grpc://c.example"}, "remote.cach: is not a known field; did you mean 'cache'?"),
        ({"disk_cache": {"max_gb": 0}}, "remote.disk_cache.max_gb: Input should be greater than 0"),
    ],
)
def test_bad_remote_section_is_one_line_with_file_line_and_field(
    tmp_path: Path, remote: dict[str, Any], expected: str
) -> None:
    message = profile_error(tmp_path, remote)
    assert message.startswith(("tf/p.yaml:", f"{tmp_path}/tf/p.yaml:")), message
    assert expected in message, message


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIGS / "remote").glob("*.yaml")))
def test_bundled_remote_configs_are_valid(name: str, tmp_path: Path) -> None:
    profile = load_profile(str(standalone_profile(tmp_path, {})), "tensorflow", tmp_path, tmp_path)
    spec = effective_spec(profile.remote, RemoteOptions(config=name), CONFIGS)
    assert spec.cache or spec.executor
    assert all(v.startswith("env:") for v in spec.headers.values())


def test_bundled_remote_configs_cover_the_four_backends() -> None:
    names = {p.stem for p in (CONFIGS / "remote").glob("*.yaml")}
    assert {"buildbuddy", "engflow", "bazel-remote", "buildgrid"} <= names


def test_layers_merge_fragment_profile_flag_fragment_then_flags(tmp_path: Path) -> None:
    path = standalone_profile(tmp_path, {"config": "bazel-remote", "instance_name": "ci", "headers": {"x-a": "env:A"}})
    profile = load_profile(str(path), "tensorflow", tmp_path, tmp_path)
    # The profile's section wins over its fragment; --remote-config over both; flags over all.
    only_profile = effective_spec(profile.remote, RemoteOptions(), CONFIGS)
    assert only_profile.cache == "grpc://127.0.0.1:9092" and only_profile.instance_name == "ci"
    spec = effective_spec(
        profile.remote,
        RemoteOptions(config="buildbuddy", no_upload=True, disk_cache_max_gb="7.5"),
        CONFIGS,
    )
    assert spec.cache == "grpcs://remote.buildbuddy.io"
    assert spec.headers == {"x-a": "env:A", "x-buildbuddy-api-key": "env:BUILDBUDDY_API_KEY"}
    assert spec.instance_name == "ci" and spec.upload is False and spec.disk_cache.max_gb == 7.5


def test_a_fragment_can_start_a_profile_chain(tmp_path: Path) -> None:
    path = standalone_profile(tmp_path, {"instance_name": "ci"})
    path.write_text("extends: remote/bazel-remote\n" + path.read_text())
    profile = load_profile(str(path), "tensorflow", CONFIGS, ROOT)
    assert profile.remote.cache == "grpc://127.0.0.1:9092" and profile.remote.instance_name == "ci"


def test_unknown_remote_config_names_the_ones_there_are() -> None:
    with pytest.raises(UsageError, match=r"no remote config 'buildbudy'.*available: .*buildbuddy"):
        effective_spec(load_profile("example", "tensorflow", CONFIGS, ROOT).remote,
                       RemoteOptions(config="buildbudy"), CONFIGS)


def _resolve(tmp_path: Path, remote: dict[str, Any], version: str, *, dry_run: bool = False,
             env: dict[str, str] | None = None, **flags: Any):
    path = standalone_profile(tmp_path, remote)
    profile = load_profile(str(path), "tensorflow", tmp_path, tmp_path)
    return resolve_remote(profile, RemoteOptions(**flags), CONFIGS, version, dry_run=dry_run,
                          env={"HOME": str(tmp_path), "K": "k-123456789", **(env or {})})


def test_flags_follow_the_bazel_version(tmp_path: Path) -> None:
    remote = {"cache": "grpcs://c.example", "compression": True, "credential_helper": "/usr/bin/helper"}
    with pytest.raises(UsageError, match=r"credential_helper needs Bazel 6 or newer.*Bazel 4\.2\.3"):
        _resolve(tmp_path, remote, "4.2.3")
    old = _resolve(tmp_path, {**remote, "credential_helper": None}, "4.2.3")
    assert not any("compression" in line.option for line in old.rc_lines)
    assert any("no cache compression (it came in Bazel 5.0); skipped" in w for w in old.warnings)
    five = _resolve(tmp_path, {**remote, "credential_helper": None}, "5.4.1")
    assert "--experimental_remote_cache_compression" in [line.option for line in five.rc_lines]
    six = [line.option for line in _resolve(tmp_path, remote, "6.5.0").rc_lines]
    assert "--experimental_credential_helper=/usr/bin/helper" in six
    seven = [line.option for line in _resolve(tmp_path, remote, "7.4.1").rc_lines]
    assert "--remote_cache_compression" in seven and "--credential_helper=/usr/bin/helper" in seven
    dry = _resolve(tmp_path, remote, "4.2.3", dry_run=True)
    assert any("credential_helper needs Bazel 6" in w for w in dry.warnings)


def test_compression_is_skipped_for_http_caches(tmp_path: Path) -> None:
    plan = _resolve(tmp_path, {"cache": "https://c.example", "compression": True}, "7.4.1")
    assert not any("compression" in line.option for line in plan.rc_lines)
    assert any("only gRPC" in w for w in plan.warnings)


def test_disk_cache_is_on_by_default_in_the_user_cache_folder(tmp_path: Path) -> None:
    default = _resolve(tmp_path, {}, "4.2.3", env={"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert default.flags == (f"--disk_cache={tmp_path / 'xdg' / 'tfwheels' / 'disk-cache'}",)
    assert default.rc_path is None and default.startup == []
    assert user_cache_dir({"HOME": "/Users/u"}, "darwin") == Path("/Users/u/Library/Caches/tfwheels")
    moved = _resolve(tmp_path, {}, "4.2.3", disk_cache=str(tmp_path / "dc"), repository_cache="~/repos")
    assert moved.flags == (f"--disk_cache={tmp_path / 'dc'}", f"--repository_cache={Path('~/repos').expanduser()}")
    assert _resolve(tmp_path, {}, "4.2.3", no_disk_cache=True).flags == ()
    with pytest.raises(UsageError, match=r"^--disk-cache-max-gb 'lots': "):
        _resolve(tmp_path, {}, "4.2.3", disk_cache_max_gb="lots")


def test_remote_settings_go_to_the_private_rc_with_secrets_by_name(tmp_path: Path) -> None:
    remote = {"cache": "grpcs://c.example", "executor": "grpcs://c.example", "instance_name": "main",
              "platform": {"OSFamily": "Linux"}, "upload": False, "headers": {"x-api-key": "env:K"}}
    plan = _resolve(tmp_path, remote, "4.2.3", env={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert plan.rc_path is not None and plan.rc_path.parent.parent == tmp_path
    assert not plan.rc_path.parent.exists()  # made only when the build starts
    assert plan.startup == [f"--bazelrc={plan.rc_path}"]
    assert plan.secret_env == ("K",)
    shown = plan.rc_text(None)
    real = plan.rc_text({"K": "k-123456789"})
    for line in ("build --remote_cache=grpcs://c.example", "build --remote_executor=grpcs://c.example",
                 "build --noremote_local_fallback", "build --remote_instance_name=main",
                 "build --remote_default_exec_properties=OSFamily=Linux",
                 "build --remote_upload_local_results=false"):
        assert line in shown and line in real
    assert "build --remote_header=x-api-key=<redacted:env:K>" in shown and "k-123456789" not in shown
    assert "build --remote_header=x-api-key=k-123456789" in real
    assert plan.to_json()["headers"] == {"x-api-key": "<redacted:env:K>"}
    assert "k-123456789" not in json.dumps(plan.to_json())


def test_missing_credential_variable_is_a_usage_error(tmp_path: Path) -> None:
    remote = {"cache": "grpcs://c.example", "headers": {"x-api-key": "env:NOT_SET_ANYWHERE"}}
    with pytest.raises(UsageError, match=r"^environment variable NOT_SET_ANYWHERE is not set \(remote\.headers\.x-api-key"):
        _resolve(tmp_path, remote, "4.2.3")
    assert any("NOT_SET_ANYWHERE is not set" in w for w in _resolve(tmp_path, remote, "4.2.3", dry_run=True).warnings)


def test_private_rc_path_prefers_the_runtime_dir(tmp_path: Path) -> None:
    path = private_rc_path({"XDG_RUNTIME_DIR": str(tmp_path)})
    assert path.parent.parent == tmp_path and path.name == "remote.bazelrc"
    assert path.parent.name.startswith(f"tfwheels-{os.getpid()}-")  # for sweep_stale
    assert path != private_rc_path({"XDG_RUNTIME_DIR": str(tmp_path)})


def test_private_rc_file_is_0600_in_a_new_0700_folder_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "tfwheels-x" / "remote.bazelrc"
    write_private(path, "build --remote_header=a=b\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    remove_private(path)
    assert not path.parent.exists()
    path.parent.mkdir()  # someone got there first: refuse rather than write into their folder
    with pytest.raises(FileExistsError):
        write_private(path, "x")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_the_credentials_rc_of_a_killed_build_only(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = tmp_path / f"tfwheels-{dead}-{'ab' * 8}"
    write_private(stale / "remote.bazelrc", f"build --remote_header=x-api-key={CANARY}\n")
    live = tmp_path / f"tfwheels-{os.getpid()}-{'cd' * 8}"
    write_private(live / "remote.bazelrc", "build --remote_cache=grpc://x\n")
    others = [tmp_path / "tfwheels-patch-1234", tmp_path / f"tfwheels-{dead}-notours", tmp_path / "unrelated"]
    for other in others:
        other.mkdir()
    (tmp_path / f"tfwheels-{dead}-{'ef' * 8}").write_text("a file, not our folder")
    assert sweep_stale([tmp_path]) == [stale]
    assert not stale.exists() and live.is_dir() and all(p.is_dir() for p in others)
    assert (tmp_path / f"tfwheels-{dead}-{'ef' * 8}").is_file()
    assert sweep_stale([tmp_path / "missing"]) == []


def test_a_build_session_sweeps_stale_credentials_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from tfwheels.credentials import session

    stale = tmp_path / f"tfwheels-{_dead_pid()}-{'01' * 8}"
    write_private(stale / "remote.bazelrc", "x\n")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    plan = SimpleNamespace(remote=_resolve(tmp_path / "p", {}, "4.2.3"), log_path=tmp_path / "no.log",
                           bep_path=tmp_path / "no.bep")
    monkeypatch.setattr("tfwheels.credentials._after_build", lambda *a: None)
    with session(plan, build=True):  # type: ignore[arg-type]
        assert not stale.exists()


# Bazel 4.2.3 against BuildGrid with JWT authorization and a wrong token (captured; the bazel
# test below captures it afresh): the whole build stops with exit 34.
BAZEL4_REFUSED = (
    "Starting local Bazel server and connecting to it...\n"
    "INFO: Invocation ID: 466b9f22-c5c3-4a89-bc9f-93399ddf0a56\n"
    "ERROR: Failed to query remote execution capabilities: UNAUTHENTICATED: No valid authorization or "
    "authentication provided\n"
)
COMPILE_ERROR = (
    "ERROR: /src/tensorflow/core/BUILD:12:11: Compiling tensorflow/core/x.cc failed: (Exit 1): gcc failed\n"
    "tensorflow/core/x.cc:3:1: error: 'UNAUTHENTICATED' was not declared in this scope\n"
    "INFO: Elapsed time: 3.1s, Critical Path: 2.0s\nFAILED: Build did NOT complete successfully\n"
)


def test_local_retry_is_warranted_only_for_a_refusing_remote_with_fallback_on(tmp_path: Path) -> None:
    url = "grpc://127.0.0.1:1"
    fallback = _resolve(tmp_path, {"cache": url, "local_fallback": True}, "4.2.3")
    strict = _resolve(tmp_path, {"cache": url}, "4.2.3")
    local = _resolve(tmp_path, {"local_fallback": True}, "4.2.3")
    assert local_retry_warranted(fallback, 34, BAZEL4_REFUSED)
    assert local_retry_warranted(fallback, 34, "")  # REMOTE_ERROR whatever the log says
    denied = "WARNING: Remote Cache: PERMISSION_DENIED: caller may not write to the cache\n"
    assert local_retry_warranted(fallback, 1, denied)
    assert not local_retry_warranted(strict, 34, BAZEL4_REFUSED)  # fallback off: stop
    assert not local_retry_warranted(local, 34, BAZEL4_REFUSED)  # no remote to drop
    assert not local_retry_warranted(fallback, 0, BAZEL4_REFUSED)
    assert not local_retry_warranted(fallback, 1, COMPILE_ERROR)
    assert not local_retry_warranted(fallback, 8, "")  # interrupted


def test_use_local_only_rewrites_the_rc_without_the_remote(tmp_path: Path) -> None:
    plan = _resolve(tmp_path, {"cache": "grpc://127.0.0.1:1", "local_fallback": True,
                               "headers": {"x-api-key": "env:K"}}, "4.2.3", env={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert plan.rc_path is not None
    write_private(plan.rc_path, plan.rc_text({"K": "k-123456789"}))
    use_local_only(plan)
    text = plan.rc_path.read_text()
    assert "--remote" not in text and "k-123456789" not in text and "building locally" in text
    remove_private(plan.rc_path)
    log = tmp_path / "b.log"
    log.write_bytes(b"old\n" + BAZEL4_REFUSED.encode())
    assert list(log_lines_since(log, 4)) == BAZEL4_REFUSED.splitlines()
    assert list(log_lines_since(tmp_path / "none")) == []
    assert local_retry_warranted(plan, 1, log_lines_since(log))


# --- redaction --------------------------------------------------------------------------------


def test_redactor_scrubs_lines_bep_files_and_masks_open_logs(tmp_path: Path) -> None:
    red = Redactor()
    red.add('ab"c-secret-1', "<redacted:env:K>")
    line = "  'build' options: --remote_header=x-api-key=ab\"c-secret-1"
    assert red.scrub(line) == "  'build' options: --remote_header=x-api-key=<redacted:env:K>"
    # The BEP spells the value JSON-escaped.
    event = json.dumps({"args": ["--remote_header=x-api-key=ab\"c-secret-1"]})
    assert "secret" not in red.scrub(event) and "<redacted:env:K>" in red.scrub(event)
    redactor.add(CANARY, "<redacted:env:K>")
    bep = tmp_path / "build_events.json"
    bep.write_text(json.dumps({"optionsDescription": f"--remote_header=x={CANARY}"}) + "\n")
    assert scrub_file(bep) and CANARY not in bep.read_text() and "<redacted:env:K>" in bep.read_text()
    log = tmp_path / "java.log"
    log.write_bytes(f"before {CANARY} after\n".encode())
    size = log.stat().st_size
    assert mask_in_place(log)
    assert log.stat().st_size == size and log.read_bytes() == b"before " + b"*" * len(CANARY) + b" after\n"


def test_explain_trouble_reads_bazel_remote_warnings(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text(
        "old line\n"
        "WARNING: Reading from Remote Cache:\n401 Unauthorized\n"
        "WARNING: Writing to Remote Cache:\n4 errors during bulk transfer\n"
        "ERROR: Failed to query remote execution capabilities: UNAUTHENTICATED: bad key\n"
    )
    plan = _resolve(tmp_path, {"cache": "http://c.example", "headers": {"x-k": "env:K"}}, "4.2.3")
    messages = explain_trouble(log, len("old line\n"), plan)
    assert "Reading from the remote cache http://c.example failed for some actions; Bazel built them locally" in messages
    assert "http://c.example refused the credential (HTTP 401 Unauthorized); check the credential in $K" in messages
    assert any(m.startswith("Bazel could not use http://c.example: UNAUTHENTICATED") for m in messages)


def test_disk_cache_size_is_measured_at_most_hourly_while_under_the_limit(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    (disk / "cas").mkdir(parents=True)
    (disk / "cas" / "blob").write_bytes(b"x" * 4000)
    plan = _resolve(tmp_path, {"disk_cache": {"path": str(disk), "max_gb": 5000 / 1024**3}}, "4.2.3")
    assert disk_cache_warning(plan, now=1000.0) is None
    (disk / "cas" / "more").write_bytes(b"x" * 4000)  # now 8000 bytes, past the limit
    assert disk_cache_warning(plan, now=1000.0 + 60) is None  # remembered size, no walk
    warning = disk_cache_warning(plan, now=1000.0 + 3601)
    assert warning is not None and warning.startswith(f"the disk cache {disk} holds more than")


def test_disk_cache_size_stops_early(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / "cas" / f"{i:02d}").mkdir(parents=True)
        (tmp_path / "cas" / f"{i:02d}" / "blob").write_bytes(b"x" * 1000)
    assert disk_cache_size(tmp_path) == 5000
    assert 1000 < disk_cache_size(tmp_path, stop_after=1500) < 5000


# --- the probe, against nginx -----------------------------------------------------------------


@requires_nginx
def test_probe_tells_a_good_key_from_a_bad_one_and_a_dead_port(tmp_path: Path) -> None:
    with nginx_cache(tmp_path / "nginx", api_key=CANARY) as server:
        assert probe_http(server.url, {"x-api-key": CANARY}) is None
        assert probe_http(server.url, {"x-api-key": "wrong"}) == "refused the credential (HTTP 401 Unauthorized)"
        assert probe_http(server.url, {}) == "refused the credential (HTTP 401 Unauthorized)"
    dead = free_port()
    assert probe_http(f"http://127.0.0.1:{dead}/cache", {}, timeout=2).startswith("cannot be reached")
    assert probe_tcp(f"grpc://127.0.0.1:{dead}", timeout=2).startswith("cannot be reached")


def test_unreachable_grpc_cache_stops_or_falls_back(tmp_path: Path) -> None:
    url = f"grpc://127.0.0.1:{free_port()}"
    plan = _resolve(tmp_path, {"cache": url}, "4.2.3")
    with pytest.raises(RemoteError, match=rf"remote {url} cannot be reached .*--remote-fallback"):
        preflight(plan, {})
    assert RemoteError("x").exit_code == 34
    assert preflight(_resolve(tmp_path, {"cache": url, "local_fallback": True}, "4.2.3"), {}) is False


# --- the command line, without Bazel ----------------------------------------------------------


def test_dry_run_shows_remote_settings_with_the_credential_redacted(tmp_path: Path) -> None:
    tree = copy_example("tf-mini", tmp_path / "tree")
    profile = example_profile(tmp_path, "remote-dry", {"cache": "grpcs://cache.example",
                                                       "headers": {"x-api-key": f"env:{KEY_VAR}"}})
    env = env_for(tmp_path, **{KEY_VAR: CANARY})
    result = invoke("build-tf", "--profile", str(profile), "--source", str(tree), "--dry-run", "--json",
                    "--remote-instance", "ci", env=env)
    assert result.returncode == 0, result.stderr
    assert CANARY not in result.stdout + result.stderr
    plan = json.loads(result.stdout)
    remote = plan["remote"]
    assert remote["cache"] == "grpcs://cache.example" and remote["instance_name"] == "ci"
    assert remote["headers"] == {"x-api-key": f"<redacted:env:{KEY_VAR}>"}
    assert f"build --remote_header=x-api-key=<redacted:env:{KEY_VAR}>" in remote["rc"]
    assert remote["disk_cache"] == str(tmp_path / "cache-home" / "tfwheels" / "disk-cache")
    argv = plan["bazel_commands"][0]
    assert argv[1] == f"--bazelrc={remote['rc_file']}" and argv[2] == "build"
    assert f"--disk_cache={remote['disk_cache']}" in argv
    assert not any(a.startswith("--remote") for a in argv)  # remote settings only via the private rc
    assert not Path(remote["rc_file"]).parent.exists() and not list((tmp_path / "run").iterdir())


def test_missing_credential_stops_before_bazel_with_exit_2(tmp_path: Path) -> None:
    tree = copy_example("tf-mini", tmp_path / "tree")
    profile = example_profile(tmp_path, "remote-missing", {"cache": "http://127.0.0.1:9/cache",
                                                           "headers": {"x-api-key": "env:TFW_SURELY_UNSET"}})
    result = invoke("build-tf", "--profile", str(profile), "--source", str(tree), env=env_for(tmp_path))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        (
            "error: environment variable TFW_SURELY_UNSET is not set (remote.headers.x-api-key reads "
            "it); export TFW_SURELY_UNSET=<your credential> or remove the header"
        )
    ]
    assert "+ " not in result.stderr  # no command ran


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--remote-cache", "ftp://cache.example"], "error: --remote-cache 'ftp://cache.example': "),
        (["--remote-executor", "http://x.example"], "error: --remote-executor 'http://x.example': "),
        (["--disk-cache-max-gb", "-3"], "error: --disk-cache-max-gb '-3': "),
        (["--remote-config", "nope"], "error: no remote config 'nope'"),
        (["--remote-instance=-x"], "error: --remote-instance '-x': '-x' starts with '-' where a value is expected"),
        (["--disk-cache=--x"], "error: --disk-cache '--x': '--x' starts with '-' where a value is expected"),
        (["--repository-cache=-zz"], "error: --repository-cache '-zz': '-zz' starts with '-' where a value"),
        (["--remote-platform", "Pool=-big"], "error: --remote-platform '-big': '-big' starts with '-' where"),
        (["--remote-platform", "Pool"], "error: --remote-platform 'Pool': give KEY=VALUE"),
    ],
)
def test_bad_remote_flags_are_usage_errors(tmp_path: Path, flags: list[str], expected: str) -> None:
    result = invoke("build-tf", "--profile", "example", "--source", str(tmp_path), "--dry-run", *flags,
                    env=env_for(tmp_path))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr


@pytest.mark.parametrize(
    ("remote", "field"),
    [
        ({"instance_name": "-x"}, "remote.instance_name"),
        ({"executor": "grpc://x.example", "platform": {"OSFamily": "--x"}}, "remote.platform.OSFamily"),
        ({"executor": "grpc://x.example", "platform": {"-x": "y"}}, "remote.platform"),
        ({"credential_helper": "--helper"}, "remote.credential_helper"),
        ({"disk_cache": {"path": "--output_base=/"}}, "remote.disk_cache.path"),
        ({"repository_cache": "-r"}, "remote.repository_cache"),
    ],
)
def test_leading_dash_in_remote_values_is_refused(tmp_path: Path, remote: dict[str, Any], field: str) -> None:
    message = profile_error(tmp_path, remote)
    assert f" {field}" in message and "starts with '-' where a value is expected; it would be read as a flag" in message


def test_relative_cache_paths_in_a_profile_are_taken_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = standalone_profile(tmp_path / "project", {"disk_cache": {"path": "dc"}, "repository_cache": "../repos"})
    profile = load_profile(str(path), "tensorflow", tmp_path / "project" / "configs", None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    plan = resolve_remote(profile, RemoteOptions(), CONFIGS, "4.2.3", env={"HOME": str(tmp_path)})
    assert plan.disk_cache == path.parent / "dc"
    assert plan.repository_cache == path.parent / ".." / "repos"
    # the command line's own relative paths are the current folder's, as for any command
    flags = resolve_remote(profile, RemoteOptions(disk_cache="mine", repository_cache="r"), CONFIGS, "4.2.3",
                           env={"HOME": str(tmp_path)})
    assert flags.disk_cache == elsewhere / "mine" and flags.repository_cache == elsewhere / "r"


def test_remote_platform_flags_merge_over_the_profile_and_show_in_dry_run_json(tmp_path: Path) -> None:
    tree = copy_example("tf-mini", tmp_path / "tree")
    profile = example_profile(tmp_path, "platform", {"executor": "grpcs://exec.example",
                                                     "platform": {"OSFamily": "Linux", "Pool": "small"}})
    result = invoke("build-tf", "--profile", str(profile), "--source", str(tree), "--dry-run", "--json",
                    "--remote-platform", "Pool=big", "--remote-platform", "container-image=docker://x:1",
                    env=env_for(tmp_path))
    assert result.returncode == 0, result.stderr
    remote = json.loads(result.stdout)["remote"]
    assert remote["platform"] == {"OSFamily": "Linux", "Pool": "big", "container-image": "docker://x:1"}
    assert "build --remote_default_exec_properties=Pool=big" in remote["rc"]
    assert "build --remote_default_exec_properties=Pool=small" not in remote["rc"]
    assert "--remote-platform" in invoke("build-tf", "--help").stdout


def test_credential_helper_is_refused_on_bazel_4(tmp_path: Path) -> None:
    tree = copy_example("tf-mini", tmp_path / "tree")
    profile = example_profile(tmp_path, "helper", {"cache": "grpcs://c.example", "credential_helper": "/bin/true"})
    result = invoke("build-tf", "--profile", str(profile), "--source", str(tree), env=env_for(tmp_path))
    assert result.returncode == 2
    assert "error: remote.credential_helper needs Bazel 6 or newer" in result.stderr


# --- real builds against nginx ----------------------------------------------------------------


@dataclass
class HttpScenario:
    base: Path
    first: Build
    second: Build
    requests: list[str]


@pytest.fixture(scope="module")
def http_scenario(tmp_path_factory: pytest.TempPathFactory, fixed_example: FixedProject) -> HttpScenario:
    """Two builds from fresh workspaces and output bases against an nginx cache that wants a key."""
    base = tmp_path_factory.mktemp("http-cache")
    env = env_for(base, fixed_example.root, **{KEY_VAR: CANARY})
    remote = {"cache": "", "disk_cache": {"enabled": False}, "headers": {"x-api-key": f"env:{KEY_VAR}"}}
    # The server's own config holds the key, so it lives outside the folder scanned for it.
    with nginx_cache(tmp_path_factory.mktemp("nginx"), api_key=CANARY) as server:
        remote["cache"] = server.url
        first = build(base, "first", remote, env)
        second = build(base, "second", remote, env)
        requests = server.requests()
    return HttpScenario(base, first, second, requests)


@pytest.mark.bazel
@requires_bazel
@requires_nginx
def test_second_build_from_a_fresh_output_base_hits_every_action(http_scenario: HttpScenario) -> None:
    first = http_scenario.first.summary
    second = http_scenario.second.summary
    actions = non_internal(first["processes"])
    assert actions > 0 and first["processes"].get("remote cache hit", 0) == 0
    assert second["processes"]["remote cache hit"] == actions
    assert f"INFO: {second['processes']['total']} processes: {actions} remote cache hit" in http_scenario.second.result.stderr
    assert second["cache"] == {"remote_cache_hits": actions, "hit_ratio": 1.0}
    assert first["cache"] == {"remote_cache_hits": 0, "hit_ratio": 0.0}
    methods = {line.split()[0] + " " + line.split()[1].split("/")[2] + " " + line.split()[2] for line in http_scenario.requests}
    assert {"PUT ac 201", "PUT cas 201", "GET ac 200", "GET cas 200"} <= methods, methods


@pytest.mark.bazel
@requires_bazel
@requires_nginx
def test_the_build_report_counts_the_remote_cache_hits(http_scenario: HttpScenario) -> None:
    reports = sorted((http_scenario.base / "build" / "reports").glob("*-tf-second.json"))
    assert reports, "no build report written"
    bazel = json.loads(reports[-1].read_text())["bazel"]
    assert bazel["remote_cache_hits"] == non_internal(http_scenario.first.summary["processes"])
    assert bazel["hit_ratio"] == 1.0


@pytest.mark.bazel
@requires_bazel
@requires_nginx
def test_the_canary_credential_lands_in_no_file_and_no_output(http_scenario: HttpScenario) -> None:
    for run in (http_scenario.first, http_scenario.second):
        assert run.result.returncode == 0, run.result.stderr[-3000:]
        assert CANARY not in run.result.stdout and CANARY not in run.result.stderr
    # Everything the builds wrote: workspaces, output bases (server logs included), build/ with
    # the logs and the BEP, dist/ with the manifest, the runtime dir that held the rc files.
    assert files_containing(http_scenario.base, CANARY.encode()) == []
    assert not list((http_scenario.base / "run").iterdir()), "a credentials rc file was left behind"


@pytest.mark.bazel
@requires_bazel
@requires_nginx
def test_log_and_bep_show_the_credential_redacted(http_scenario: HttpScenario) -> None:
    build_dir = http_scenario.base / "build"
    logs = "".join(p.read_text() for p in (build_dir / "logs").glob("tf-second-*.log"))
    # The example's .bazelrc sets --announce_rc, so Bazel printed the private rc's options.
    assert f"--remote_header=x-api-key=<redacted:env:{KEY_VAR}>" in logs
    bep = (build_dir / "bep" / "tf-second" / "build_events.json").read_text()
    assert f"<redacted:env:{KEY_VAR}>" in bep
    assert f"--client_env={KEY_VAR}=" not in bep  # never in Bazel's environment at all


@pytest.mark.bazel
@requires_bazel
@requires_nginx
def test_wrong_credential_stops_before_bazel_or_falls_back(tmp_path: Path, fixed_example: FixedProject) -> None:
    remote = {"cache": "", "disk_cache": {"enabled": False}, "headers": {"x-api-key": f"env:{KEY_VAR}"}}
    env = env_for(tmp_path, fixed_example.root, **{KEY_VAR: "tfw-wrong-key-0000"})
    with nginx_cache(tmp_path / "nginx", api_key=CANARY) as server:
        remote["cache"] = server.url
        tree = copy_example("tf-mini", tmp_path / "tree")
        profile = example_profile(tmp_path, "wrong", remote, output_base=tmp_path / "output-base")
        failed = invoke("build-tf", "--profile", str(profile), "--source", str(tree), env=env)
        assert failed.returncode == 34, failed.stderr[-3000:]
        assert (
            f"error: remote {server.url} refused the credential (HTTP 401 Unauthorized); check the "
            f"credential in ${KEY_VAR}, or set remote.local_fallback: true (--remote-fallback)"
        ) in failed.stderr
        assert "bazel-4 " not in failed.stderr and "bazel " not in failed.stderr  # Bazel never started
        local = build(tmp_path, "fallback", {**remote, "local_fallback": True}, env, tree=tree)
    summary = local.summary
    assert f"warning: remote {server.url} refused the credential (HTTP 401 Unauthorized); building locally" in local.result.stderr
    assert summary["processes"].get("remote cache hit", 0) == 0 and non_internal(summary["processes"]) > 0
    assert summary["wheels"]
    assert not list((tmp_path / "run").iterdir())


@pytest.mark.bazel
@requires_bazel
@requires_nginx
def test_failed_build_still_removes_the_credentials_rc(tmp_path: Path) -> None:
    remote = {"cache": "", "disk_cache": {"enabled": False}, "headers": {"x-api-key": f"env:{KEY_VAR}"}}
    with nginx_cache(tmp_path / "nginx") as server:
        remote["cache"] = server.url
        run = build(tmp_path, "unpatched", remote, env_for(tmp_path, **{KEY_VAR: CANARY}), extra={"patches": []})
    assert run.result.returncode == 1, run.result.stderr[-3000:]
    assert "undeclared inclusion(s)" in run.result.stderr
    assert not list((tmp_path / "run").iterdir())
    assert files_containing(tmp_path, CANARY.encode()) == []


SLOW_BUILD = 'genrule(name = "slow", outs = ["slow.txt"], cmd = "sleep 120 && touch $@")\n'


@pytest.mark.bazel
@requires_bazel
@requires_nginx
def test_interrupted_build_still_removes_the_credentials_rc(tmp_path: Path) -> None:
    remote = {"cache": "", "disk_cache": {"enabled": False}, "headers": {"x-api-key": f"env:{KEY_VAR}"}}
    tree = copy_example("tf-mini", tmp_path / "tree")
    (tree / "slow").mkdir()
    (tree / "slow" / "BUILD").write_text(SLOW_BUILD)
    env = {**os.environ, **env_for(tmp_path, **{KEY_VAR: CANARY})}
    run_dir = tmp_path / "run"
    with nginx_cache(tmp_path / "nginx") as server:
        remote["cache"] = server.url
        profile = example_profile(tmp_path, "slow", remote, output_base=tmp_path / "output-base",
                                  extra={"bazel": {"startup_flags": [f"--output_base={tmp_path / 'output-base'}"],
                                                   "targets": ["//slow:slow"]}})
        proc = subprocess.Popen(
            [sys.executable, "-m", "invoke", "build-tf", "--profile", str(profile), "--source", str(tree)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            log = tmp_path / "build" / "logs" / "latest.log"
            while time.monotonic() < deadline and "Executing genrule //slow:slow" not in (
                log.read_text() if log.exists() else ""
            ):
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.2)
            assert list(run_dir.iterdir()), "the credentials rc should exist while Bazel runs"
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            shutdown(tree)
    assert proc.returncode == 130, stderr[-2000:]  # SIGINT, as for every interrupted build
    assert not list(run_dir.iterdir()), "the credentials rc survived the interrupt"
    assert CANARY not in stdout + stderr
    assert files_containing(tmp_path, CANARY.encode()) == []


@pytest.mark.bazel
@requires_bazel
def test_disk_cache_serves_a_fresh_output_base_and_warns_when_too_big(
    tmp_path: Path, fixed_example: FixedProject
) -> None:
    env = env_for(tmp_path, fixed_example.root)
    disk = tmp_path / "disk-cache"
    first = build(tmp_path, "disk-first", None, env, "--disk-cache", str(disk))
    second = build(tmp_path, "disk-second", None, env, "--disk-cache", str(disk), "--disk-cache-max-gb", "0.000001")
    actions = non_internal(first.summary["processes"])
    assert actions > 0 and (disk / "ac").is_dir() and (disk / "cas").is_dir()
    # Bazel 4.2.3 reports disk cache hits as remote cache hits; newer ones say "disk cache hit".
    processes = second.summary["processes"]
    assert processes.get("remote cache hit", 0) + processes.get("disk cache hit", 0) == actions
    assert f"warning: the disk cache {disk} holds more than" in second.result.stderr
    assert "past remote.disk_cache.max_gb 1e-06" in second.result.stderr
    assert "warning: the disk cache" not in first.result.stderr


# --- real builds against BuildGrid (gRPC) -----------------------------------------------------


@pytest.mark.bazel
@requires_bazel
@pytest.mark.skipif(find_bgd() is None, reason=BUILDGRID_HINT)
def test_buildgrid_grpc_cache_serves_a_fresh_output_base(tmp_path: Path, fixed_example: FixedProject) -> None:
    bgd = find_bgd()
    assert bgd is not None
    env = env_for(tmp_path, fixed_example.root, **{KEY_VAR: CANARY})
    with buildgrid_cache(tmp_path / "buildgrid", bgd) as url:
        remote = {"cache": url, "disk_cache": {"enabled": False}, "headers": {"x-api-key": f"env:{KEY_VAR}"}}
        first = build(tmp_path, "grpc-first", remote, env)
        second = build(tmp_path, "grpc-second", remote, env)
    actions = non_internal(first.summary["processes"])
    assert actions > 0
    assert second.summary["processes"]["remote cache hit"] == actions
    assert second.summary["cache"]["hit_ratio"] == 1.0
    assert files_containing(tmp_path, CANARY.encode()) == []


def _hs256_jwt(secret: bytes) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "tfwheels-test", "exp": int(time.time()) + 3600}).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


@pytest.mark.bazel
@requires_bazel
@pytest.mark.skipif(find_bgd() is None, reason=BUILDGRID_HINT)
def test_grpc_cache_refusing_the_credential_warrants_a_local_retry_on_real_bazel(tmp_path: Path) -> None:
    """BuildGrid with JWT authorization: the TCP preflight passes, Bazel itself is refused."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "WORKSPACE").write_text("")
    (ws / "BUILD").write_text('genrule(name = "g", outs = ["g.txt"], cmd = "echo hi > $@")\n')
    bazel = shutil.which("bazel-4") or shutil.which("bazel") or "bazel"
    with _jwt_buildgrid(tmp_path / "buildgrid") as (url, secret):

        def bazel_build(token: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [bazel, f"--output_base={tmp_path / 'ob'}", "build", "//:g", f"--remote_cache={url}",
                 f"--remote_header=authorization=Bearer {token}"],
                cwd=ws, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
            )

        try:
            wrong = bazel_build("not.a.token")
            good = bazel_build(_hs256_jwt(secret))
        finally:
            subprocess.run([bazel, f"--output_base={tmp_path / 'ob'}", "shutdown"], cwd=ws,
                           capture_output=True, timeout=120, check=False)
    fallback = _resolve(tmp_path, {"cache": url, "local_fallback": True}, "4.2.3")
    assert wrong.returncode == 34, wrong.stderr[-2000:]
    assert "UNAUTHENTICATED" in wrong.stderr
    assert local_retry_warranted(fallback, wrong.returncode, wrong.stderr)
    assert not local_retry_warranted(_resolve(tmp_path, {"cache": url}, "4.2.3"), wrong.returncode, wrong.stderr)
    assert good.returncode == 0, good.stderr[-2000:]
    assert not local_retry_warranted(fallback, good.returncode, good.stderr)


@contextmanager
def _jwt_buildgrid(folder: Path) -> Iterator[tuple[str, bytes]]:
    """BuildGrid on 127.0.0.1 that takes only JWTs signed with a secret: (url, secret)."""
    from servers import buildgrid_config, stop, wait_for_port

    bgd = find_bgd()
    assert bgd is not None
    (folder / "cas").mkdir(parents=True)
    secret = secrets.token_hex(32).encode()
    (folder / "auth.secret").write_bytes(secret)
    port = free_port()
    conf = buildgrid_config(folder, port).replace(
        "authorization:\n  method: none\n",
        f"authorization:\n  method: jwt\n  secret: {folder / 'auth.secret'}\n  algorithm: hs256\n",
    )
    assert "method: jwt" in conf
    (folder / "bgd.yml").write_text(conf)
    log = folder / "bgd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([bgd, "server", "start", str(folder / "bgd.yml")], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, proc, log)
        yield f"grpc://127.0.0.1:{port}", secret
    finally:
        stop(proc)


@pytest.mark.bazel
@requires_bazel
@pytest.mark.skipif(find_bgd() is None, reason=BUILDGRID_HINT)
def test_build_against_a_grpc_cache_that_refuses_the_key_falls_back_or_stops(
    tmp_path: Path, fixed_example: FixedProject
) -> None:
    env = env_for(tmp_path, fixed_example.root, **{KEY_VAR: "Bearer not.a.token"})
    with _jwt_buildgrid(tmp_path / "buildgrid") as (url, _secret):
        remote = {"cache": url, "disk_cache": {"enabled": False},
                  "headers": {"authorization": f"env:{KEY_VAR}"}}
        stopped = build(tmp_path, "refused", remote, env)
        local = build(tmp_path, "fallback", {**remote, "local_fallback": True}, env)
    assert stopped.result.returncode == 34, stopped.result.stderr[-3000:]
    assert "UNAUTHENTICATED" in stopped.result.stderr
    assert f"the remote {url} refused the build (Bazel exit 34); building again locally" in local.result.stderr
    summary = local.summary
    assert summary["wheels"] and summary["processes"].get("remote cache hit", 0) == 0
    assert non_internal(summary["processes"]) > 0
    assert not list((tmp_path / "run").iterdir())  # the credentials rc is gone after both
