"""tfwheels tasks: each parses its flags and calls one library function (see src/tfwheels/cli.py)."""

from __future__ import annotations

import atexit
import gc
from pathlib import Path

from invoke import Collection, Task, task

from tfwheels import cli
from tfwheels.remote_options import RemoteOptions
from tfwheels.variadic import Variadic, install

install({
    "verify-wheel": Variadic("--wheel", frozenset({
        "--wheel", "-w", "--target", "-t", "--python", "--output", "--find-links", "--index-url",
    })),
    "diagnose": Variadic("--log", frozenset({"--log", "-l", "--source", "-s"})),
})

ROOT = Path(__file__).resolve().parent

# The process ends with the task and the OS takes its memory back: spare the collector its last
# walk over every object at exit (0.15 s once pydantic's schemas are loaded, on a 0.3 s rebuild).
atexit.register(gc.freeze)

_BUILD_HELP = {
    "profile": "Profile name (see `invoke profiles`) or path to a profile YAML file.",
    "source": "Use this existing source tree instead of the profile's (no fetch, no copy).",
    "dry_run": "Print the plan (files, patches, commands) and change nothing.",
    "json": "Print JSON instead of tables (with --dry-run: the plan).",
    "jobs": "Bazel --jobs (default: from this host's cores and RAM).",
    "ram": "Bazel --local_ram_resources in MB (default: half of this host's RAM).",
    "allow_problems": "Collect wheels into dist/ even if verification finds problems.",
    "force": "Re-fetch a checkout that is at another commit or has local changes.",
    "fix": "On an undeclared inclusion, write a BUILD-file patch (added to the profile's "
           "patches:) and build again, until green or no progress.",
    "max_rounds": "With --fix: build at most this many times (default 5).",
    "wait": "If another build holds this source tree, wait for it instead of stopping at once.",
}

# Caches and remote execution (README: "Sharing builds across machines and CI"); they override the profile's remote: section.
_REMOTE_HELP = {
    "disk_cache": "Bazel disk cache folder (default: ~/.cache/tfwheels/disk-cache).",
    "no_disk_cache": "Build without a disk cache.",
    "disk_cache_max_gb": "Warn after the build when the disk cache is larger than this (GB).",
    "repository_cache": "Bazel repository cache folder (default: Bazel's own).",
    "remote_config": "Merge configs/remote/NAME.yaml (buildbuddy, engflow, bazel-remote, ...).",
    "remote_cache": "Remote cache URL: http://, https://, grpc:// or grpcs://.",
    "remote_executor": "Remote execution URL: grpc:// or grpcs://.",
    "remote_instance": "Remote instance name (--remote_instance_name).",
    "no_remote_upload": "Read from the remote cache but upload nothing.",
    "remote_compression": "Compress remote cache traffic (gRPC, Bazel >= 5; else skipped).",
    "remote_fallback": "Build locally if the remote cannot be reached or refuses the credential.",
    "remote_platform": "Remote execution platform property KEY=VALUE (repeatable; over the profile's).",
}


class _RemoteFlagsLongOnly(Task):
    """A build task whose cache and remote flags get no one-letter form (too many to be useful)."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name in _REMOTE_HELP:
            opts["names"] = opts["names"][:1]
        return opts


def _remote(disk_cache, no_disk_cache, disk_cache_max_gb, repository_cache, remote_config,
            remote_cache, remote_executor, remote_instance, no_remote_upload, remote_compression,
            remote_fallback, remote_platform):
    """The cache and remote flags of build-tf/build-tff, unchecked (tfwheels.remote checks them)."""
    return RemoteOptions(
        config=remote_config, disk_cache=disk_cache, no_disk_cache=no_disk_cache,
        disk_cache_max_gb=disk_cache_max_gb, repository_cache=repository_cache,
        cache=remote_cache, executor=remote_executor, instance_name=remote_instance,
        no_upload=no_remote_upload, compression=remote_compression, local_fallback=remote_fallback,
        platform=tuple(remote_platform or ()),
    )


def _build(project: str, options: dict) -> None:
    """The body both build tasks share: their flags are identical."""
    remote = _remote(*(options.pop(name) for name in _REMOTE_FLAGS))
    jobs, ram = options.pop("jobs"), options.pop("ram")
    options["as_json"] = options.pop("json")
    cli.handled(cli.build)(ROOT, project, options.pop("profile"), jobs=int(jobs) if jobs else None,
                           ram=int(ram) if ram else None, remote=remote,
                           max_rounds=int(options.pop("max_rounds")), **options)


_REMOTE_FLAGS = ("disk_cache", "no_disk_cache", "disk_cache_max_gb", "repository_cache",
                 "remote_config", "remote_cache", "remote_executor", "remote_instance",
                 "no_remote_upload", "remote_compression", "remote_fallback", "remote_platform")


@task(klass=_RemoteFlagsLongOnly, iterable=["remote_platform"], help={**_BUILD_HELP, **_REMOTE_HELP})
def build_tf(c, profile=None, source=None, dry_run=False, json=False, jobs=None, ram=None,
             allow_problems=False, force=False, disk_cache=None, no_disk_cache=False,
             disk_cache_max_gb=None, repository_cache=None, remote_config=None, remote_cache=None,
             remote_executor=None, remote_instance=None, no_remote_upload=False,
             remote_compression=False, remote_fallback=False, remote_platform=None, fix=False,
             max_rounds=5, wait=False):
    """Build a TensorFlow wheel from a profile: configure, patch, bazel build, collect to dist/."""
    _build("tensorflow", {k: v for k, v in locals().items() if k != "c"})


@task(klass=_RemoteFlagsLongOnly, iterable=["remote_platform"], help={**_BUILD_HELP, **_REMOTE_HELP})
def build_tff(c, profile=None, source=None, dry_run=False, json=False, jobs=None, ram=None,
              allow_problems=False, force=False, disk_cache=None, no_disk_cache=False,
              disk_cache_max_gb=None, repository_cache=None, remote_config=None, remote_cache=None,
              remote_executor=None, remote_instance=None, no_remote_upload=False,
              remote_compression=False, remote_fallback=False, remote_platform=None, fix=False,
              max_rounds=5, wait=False):
    """Build a TensorFlow Federated wheel against the TF wheel in dist/."""
    _build("tensorflow_federated", {k: v for k, v in locals().items() if k != "c"})


@task(help={
    "profile": _BUILD_HELP["profile"],
    "project": "tf (default) or tff: which project's profiles --profile names.",
    "source": _BUILD_HELP["source"],
    "check": "Change nothing; exit 1 if a rendered file is missing or differs.",
})
def configure(c, profile=None, project="tf", source=None, check=False):
    """Render .tf_configure.bazelrc and .bazelrc.user into the source tree, as configure.py would."""
    cli.handled(cli.configure)(ROOT, cli.project_name(project), profile, source=source, check=check)


@task(help={
    "profile": _BUILD_HELP["profile"],
    "project": "tf (default) or tff.",
    "source": _BUILD_HELP["source"],
    "revert": "Restore the original bytes of every file the applied series changed.",
    "json": "Print what was applied, skipped or reverted as JSON.",
})
def patch(c, profile=None, project="tf", source=None, revert=False, json=False):
    """Apply the profile's patch series all-or-nothing (already applied patches are skipped)."""
    cli.handled(cli.patch)(ROOT, cli.project_name(project), profile, source=source, revert=revert,
                           as_json=json)


@task(iterable=["wheel"], help={
    "profile": _BUILD_HELP["profile"],
    "project": "tf (default) or tff.",
    "wheel": "A wheel to collect (repeatable; default: the profile's build/wheelhouse/).",
    "allow_problems": _BUILD_HELP["allow_problems"],
})
def collect(c, profile=None, project="tf", wheel=None, allow_problems=False):
    """Verify built wheels and move them into dist/ with dist/manifest.json."""
    cli.handled(cli.collect)(ROOT, cli.project_name(project), profile, wheels=wheel or [],
                             allow_problems=allow_problems)


@task(help={"json": "Print a JSON list instead of a table."})
def profiles(c, json=False):
    """List the build profiles under configs/."""
    cli.handled(cli.profiles)(ROOT, as_json=json)


@task(help={"output": "Where to write it (default: schema/profile.schema.json)."})
def schema(c, output=None):
    """Write the JSON Schema of profile files, for editors."""
    cli.handled(cli.schema)(ROOT, output)


@task(help={
    "dist": "Remove dist/ too.",
    "expunge": "Also run `bazel clean --expunge` in each working tree under build/src/.",
})
def clean(c, dist=False, expunge=False):
    """Remove build/ (working trees, logs, wheelhouses); keep dist/ unless --dist."""
    cli.handled(cli.clean)(ROOT, dist=dist, expunge=expunge)


@task(help={
    "profile": _BUILD_HELP["profile"],
    "project": "tf (default) or tff: look the profile up in configs/tf or configs/tff.",
    "dest": "Put the tree here instead of build/src/<project>-<profile>.",
    "force": "Go on despite local changes; re-clone a tree that is at another commit.",
})
def fetch(c, profile=None, project="tf", dest=None, force=False):
    """Clone the profile's source at its tag and check it is the pinned commit."""
    cli.handled(cli.fetch)(ROOT, cli.project_name(project), profile, dest=dest, force=force)


@task(help={
    "profile": "Also check what this profile needs (Bazel version, Python, Xcode for its configs).",
    "project": "tf (default) or tff: look the profile up in configs/tf or configs/tff.",
    "json": 'Print {"checks": [{"name", "status", "detail", "fix"}]} instead of a table.',
})
def doctor(c, profile=None, project="tf", json=False):
    """Check this machine for a TF build: OS/arch, Rosetta, Xcode, Bazel, disk, RAM, compilers."""
    cli.handled(cli.doctor)(ROOT, cli.project_name(project), profile, as_json=json)


class _VerifyFlagsLongOnly(Task):
    """verify-wheel: only -w, -t and -j; its later flags are long only (no clashing letters)."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name not in ("wheel", "target", "json"):
            opts["names"] = opts["names"][:1]
        return opts


@task(klass=_VerifyFlagsLongOnly, iterable=["wheel", "find_links"], help={
    "wheel": "A wheel, or a folder of wheels, to verify (bare arguments work too: "
             "invoke verify-wheel dist/*.whl).",
    "target": "darwin_arm64, linux_x86_64 or linux_aarch64 (default: what each wheel's tag says).",
    "json": 'Print {"wheels": [{"wheel", "ok", "target", "binaries", "problems"}]}.',
    "python": "Python major.minor to check Requires-Python and markers for (default: cpXY tag).",
    "fix_signatures": "Write a copy of each wheel with stale ad-hoc arm64 signatures rehashed.",
    "output": "Folder for repaired wheels (default: fixed/ beside each wheel).",
    "resolve": "Ask pip whether the wheels and all they require install on the target.",
    "find_links": "With --resolve: a folder of wheels pip may use too (repeatable).",
    "index_url": "With --resolve: the package index to use instead of pip's configured one.",
    "no_index": "With --resolve: use no index, only --find-links folders.",
    "quick": "Headers only: tags, archs, min macOS, libraries, layout, metadata; no CRC, "
             "RECORD hashes or code signatures.",
})
def verify_wheel(c, wheel=None, target=None, json=False, python=None, fix_signatures=False,
                 output=None, resolve=False, find_links=None, index_url=None, no_index=False,
                 quick=False):
    """Prove wheels right for their platform: tags, archs, min macOS, libraries, signatures, deps."""
    cli.handled(cli.verify_wheel)(wheel or [], target=target, as_json=json, python=python,
                                  fix_signatures=fix_signatures, output=output, resolve=resolve,
                                  find_links=find_links or [], index_url=index_url,
                                  no_index=no_index, quick=quick)


@task(help={
    "profile": "Only reports of this profile (default: the newest report of any).",
    "project": "tf or tff: only reports of this project.",
    "json": "Print the report file's JSON exactly as it was written.",
    "markdown": "Print a Markdown table (for $GITHUB_STEP_SUMMARY in CI).",
})
def report(c, profile=None, project=None, json=False, markdown=False):
    """Show the report of the last build again: stages, Bazel's figures, cache hits, wheels."""
    cli.handled(cli.report)(ROOT, profile, project=project, as_json=json, as_markdown=markdown)


@task(help={
    "json": 'Print {"include": [{"project", "profile", "python", "cache_key"}, ...]} on one line.',
    "project": "tf or tff: only this project's profiles.",
    "platform": "The platform whose profiles to list (default: darwin_arm64).",
})
def ci_matrix(c, json=False, project=None, platform="darwin_arm64"):
    """List the buildable profiles of a platform, with their Python, as the CI build matrix."""
    cli.handled(cli.ci_matrix)(ROOT, platform=platform, project=project, as_json=json)


@task(help={
    "log": "The Bazel log to read (default: build/logs/latest.log, the last build's); "
           "a bare argument works too: invoke diagnose LOG.",
    "json": 'Print {"findings": [{"kind", "message", "fix", "location", ...}]}.',
    "source": "The source tree the log is from; paths inside it are shown relative to it.",
})
def diagnose(c, log=None, json=False, source=None):
    """Explain a failed Bazel build: each distinct failure once, with where it is and the fix."""
    cli.handled(cli.diagnose)(ROOT, log, as_json=json, source=source)


ns = Collection(build_tf, build_tff, configure, patch, collect, profiles, schema, clean, fetch,
                doctor, verify_wheel, report, ci_matrix, diagnose)
