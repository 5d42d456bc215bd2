"""tfwheels tasks: each parses its flags and calls one library function (see src/tfwheels/cli.py)."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, task

from tfwheels import cli

ROOT = Path(__file__).resolve().parent

_BUILD_HELP = {
    "profile": "Profile name (see `invoke profiles`) or path to a profile YAML file.",
    "source": "Use this existing source tree instead of the profile's (no fetch, no copy).",
    "dry_run": "Print the plan (files, patches, commands) and change nothing.",
    "json": "Print JSON instead of tables (with --dry-run: the plan).",
    "jobs": "Bazel --jobs (default: from this host's cores and RAM).",
    "ram": "Bazel --local_ram_resources in MB (default: half of this host's RAM).",
    "allow_problems": "Collect wheels into dist/ even if verification finds problems.",
    "force": "Re-fetch a checkout that is at another commit or has local changes.",
}


@task(help=_BUILD_HELP)
def build_tf(c, profile=None, source=None, dry_run=False, json=False, jobs=None, ram=None,
             allow_problems=False, force=False):
    """Build a TensorFlow wheel from a profile: configure, patch, bazel build, collect to dist/."""
    cli.handled(cli.build)(ROOT, "tensorflow", profile, source=source, dry_run=dry_run, as_json=json,
                           jobs=int(jobs) if jobs else None, ram=int(ram) if ram else None,
                           allow_problems=allow_problems, force=force)


@task(help=_BUILD_HELP)
def build_tff(c, profile=None, source=None, dry_run=False, json=False, jobs=None, ram=None,
              allow_problems=False, force=False):
    """Build a TensorFlow Federated wheel against the TF wheel in dist/."""
    cli.handled(cli.build)(ROOT, "tensorflow_federated", profile, source=source, dry_run=dry_run,
                           as_json=json, jobs=int(jobs) if jobs else None,
                           ram=int(ram) if ram else None, allow_problems=allow_problems,
                           force=force)


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


ns = Collection(build_tf, build_tff, configure, patch, collect, profiles, schema, clean, fetch,
                doctor)
