"""Starting a rebuild's Bazel before the plan: held output, cancelling, and the record it comes from."""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import ROOT, copy_example, requires_bazel
from tfwheels import early
from tfwheels.layout import Layout
from tfwheels.plan import BuildOptions, Plan, make_plan
from tfwheels.profiles import load_profile, profile_files, resolve_profile_path
from tfwheels.remote_options import RemoteOptions
from tfwheels.run import Started, start

SH = shutil.which("sh") or "/bin/sh"
SLEEP = shutil.which("sleep") or "/bin/sleep"


def test_output_is_held_until_finish_and_comes_in_order(tmp_path: Path) -> None:
    started = start([SH, "-c", "echo one; echo two; sleep 0.3; echo three"], cwd=tmp_path)
    time.sleep(0.15)  # "one" and "two" arrive while nobody has taken the command yet
    lines: list[str] = []
    log = io.StringIO()
    result = started.finish(on_line=lines.append, log=log)
    assert result.ok and started.done
    assert lines == ["one", "two", "three"]
    assert log.getvalue() == "one\ntwo\nthree\n"
    assert result.tail == ("one", "two", "three")


def test_cancel_stops_the_command_like_ctrl_c_and_drops_its_output(tmp_path: Path) -> None:
    started = start([SH, "-c", "echo never shown; exec sleep 30"], cwd=tmp_path)
    begun = time.monotonic()
    code = started.cancel()
    assert time.monotonic() - begun < 5
    assert code == 128 + 2  # SIGINT
    lines: list[str] = []
    assert started.finish(on_line=lines.append).exit_code == code
    assert lines == []


def _record(tmp_path: Path, argv: list[str]) -> early.Record:
    return early.Record(argv=tuple(argv), tree=tmp_path, bep=tmp_path / "build_events.json")


def test_an_early_command_not_adopted_is_stopped_on_the_way_out(tmp_path: Path) -> None:
    (tmp_path / "build_events.json").write_text("{}\n")  # a stale BEP from an earlier build
    begun = time.monotonic()
    with pytest.raises(RuntimeError, match="profile error"), early.started(_record(tmp_path, [SLEEP, "30"])) as bazel:
        assert not (tmp_path / "build_events.json").exists()
        raise RuntimeError("profile error")
    assert time.monotonic() - begun < 5
    assert bazel.cancelled and bazel.started.done and bazel.started.finish().exit_code == 130


def test_an_adopted_command_runs_to_its_end(tmp_path: Path) -> None:
    with early.started(_record(tmp_path, [SH, "-c", "sleep 0.2; echo built"])) as bazel:
        started = bazel.adopt()
        lines: list[str] = []
        assert started.finish(on_line=lines.append).ok
    assert lines == ["built"] and not bazel.cancelled


# --- the record, against a real plan of the example --------------------------------------------


@pytest.fixture
def planned(tmp_path: Path) -> tuple[Layout, Plan, list[Path]]:
    tree = copy_example("tf-mini", tmp_path / "tf")
    layout = Layout.at(ROOT, tmp_path / "build", tmp_path / "dist")
    profile = load_profile("example", "tensorflow", layout.configs, layout.root)
    chain = profile_files(resolve_profile_path(layout.configs, "tensorflow", "example"), layout.configs)
    return layout, make_plan(profile, layout, tree, BuildOptions(dry_run=True)), chain



@requires_bazel
def test_record_round_trip_and_what_invalidates_it(
    planned: tuple[Layout, Plan, list[Path]], tmp_path: Path
) -> None:
    layout, plan, chain = planned
    name = early.key("tensorflow", "example", str(plan.tree), None, None, RemoteOptions())
    assert name != early.key("tensorflow", "example", str(plan.tree), 2, None, RemoteOptions())
    assert early.lookup(layout, name) is None
    assert early.remember(name, plan, chain)
    record = early.lookup(layout, name)
    assert record is not None
    assert record.argv == tuple(plan.build_argv) and record.tree == plan.tree
    assert record.environment() == plan.environment()
    assert (layout.build / "early" / f"{name}.json").stat().st_mode & 0o777 == 0o600
    matching = early.EarlyBazel(record, Started(record.argv, record.environment()))
    assert matching.matches(plan)
    other = early.EarlyBazel(record, Started((*record.argv, "--jobs=1"), record.environment()))
    assert not other.matches(plan)
    # A rendered file that configure would rewrite (the record fingerprints the tree's files).
    (plan.tree / ".bazelrc.user").write_text("# edited\n")
    assert early.lookup(layout, name) is None


@requires_bazel
def test_no_record_for_a_build_with_a_private_rc_file(
    planned: tuple[Layout, Plan, list[Path]], tmp_path: Path
) -> None:
    layout, plan, chain = planned
    name = early.key("tensorflow", "example", None, None, None, RemoteOptions())
    assert early.remember(name, plan, chain)
    secret = replace(plan, remote=replace(plan.remote, rc_path=tmp_path / "private.rc"))
    assert not early.remember(name, secret, chain)
    assert not (layout.build / "early" / f"{name}.json").exists()


# --- the saved plan ---------------------------------------------------------------------------


def _profile_paths() -> list[tuple[str, Path]]:
    from tfwheels.profiles import list_profiles

    return [(f.project, f.path) for f in list_profiles(ROOT / "configs")]


@pytest.mark.parametrize(("project", "path"), _profile_paths(), ids=lambda v: getattr(v, "stem", v))
def test_every_profiles_plan_comes_back_from_its_snapshot(project: str, path: Path, tmp_path: Path) -> None:
    layout = Layout.at(ROOT, tmp_path / "build", tmp_path / "dist")
    profile = load_profile(str(path), project, layout.configs, layout.root)
    plan = make_plan(profile, layout, tmp_path / "absent", BuildOptions(dry_run=True))
    again = Plan.from_snapshot(plan.snapshot())
    assert replace(again, log_path=plan.log_path) == plan
    assert again.log_path.parent == plan.log_path.parent and again.log_path.name.startswith(profile.key)
    assert again.to_json() == {**plan.to_json(), "log": str(again.log_path)}


def test_a_snapshot_that_is_not_a_plan_is_refused(planned: tuple[Layout, Plan, list[Path]]) -> None:
    _, plan, _ = planned
    data = plan.snapshot()
    with pytest.raises(ValueError, match="not a saved plan"):
        Plan.from_snapshot({**data, "profile": {**data["profile"], "unknown": 1}})
    with pytest.raises(ValueError, match="not a saved plan"):
        Plan.from_snapshot({k: v for k, v in data.items() if k != "tree"})
    for damaged in ({**data, "tree": None}, {**data, "flags": {"a": 1}}, ["a list"], "text"):
        with pytest.raises(ValueError, match="not a saved plan"):
            Plan.from_snapshot(damaged)  # type: ignore[arg-type]


@requires_bazel
def test_the_saved_plan_needs_the_same_environment(
    planned: tuple[Layout, Plan, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, plan, chain = planned
    name = early.key("tensorflow", "example", str(plan.tree), None, None, RemoteOptions())
    monkeypatch.setenv("SHLVL", "3")
    assert early.remember(name, plan, chain)
    record = early.lookup(layout, name)
    assert record is not None
    saved = record.saved_plan()
    assert saved is not None and replace(saved, log_path=plan.log_path) == plan
    monkeypatch.setenv("SHLVL", "4")  # another shell of the same user: still the same plan
    assert record.saved_plan() is not None
    monkeypatch.setenv("TFW_TEST_API_TOKEN", "not in the digest")  # credentials stay out of it
    assert record.saved_plan() is not None
    monkeypatch.setenv("TFW_TEST_SOMETHING_NEW", "1")
    assert record.saved_plan() is None
    monkeypatch.delenv("TFW_TEST_SOMETHING_NEW")
    if os.environ.get("CI"):  # planning reads it (--show_progress_rate_limit): toggle it
        monkeypatch.delenv("CI")
    else:
        monkeypatch.setenv("CI", "true")
    assert record.saved_plan() is None


@requires_bazel
def test_what_the_host_gives_a_plan_invalidates_the_record(
    planned: tuple[Layout, Plan, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, plan, chain = planned
    tools = tmp_path / "tools"
    tools.mkdir()
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    name = early.key("tensorflow", "example", str(plan.tree), None, None, RemoteOptions())
    assert early.remember(name, plan, chain)
    assert early.lookup(layout, name) is not None
    (tools / "bazelisk").write_text("#!/bin/sh\n")  # find_bazel would prefer it now
    assert early.lookup(layout, name) is None
    assert early.remember(name, plan, chain)
    (plan.tree / ".bazelversion").write_text("9.9.9\n")  # check_version would refuse it now
    assert early.lookup(layout, name) is None
    assert early.remember(name, plan, chain)
    (layout.configs / "tf" / ".tfw-test-new-profile.yaml").touch()  # configs/ gained a file
    try:
        assert early.lookup(layout, name) is None
    finally:
        (layout.configs / "tf" / ".tfw-test-new-profile.yaml").unlink()


_AUDIT: list[tuple[str, tuple[object, ...]]] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _AUDIT is not None and event in ("open", "os.listdir", "os.scandir", "subprocess.Popen", "os.exec", "os.posix_spawn"):
        _AUDIT.append((event, args))


@requires_bazel
@pytest.mark.parametrize(("project", "example"), [("tensorflow", "tf-mini"), ("tensorflow_federated", "tff-mini")])
def test_the_record_fingerprints_every_file_planning_reads(project: str, example: str, tmp_path: Path) -> None:
    # What a saved plan rests on: were any file that planning opens or lists missing from the
    # record's inputs, a change to it would leave the saved plan in use, stale.
    global _AUDIT
    from tfwheels.cli import _preflight
    from tfwheels.layout import user_cache_dir
    from tfwheels.source import prepare_source

    tree = copy_example(example, tmp_path / "tree")
    layout = Layout.at(ROOT, tmp_path / "build", tmp_path / "dist")
    layout.dist.mkdir()
    probe = make_plan(load_profile("example", "tensorflow", layout.configs, layout.root), layout, tree,
                      BuildOptions(dry_run=True))
    tag = probe.host.python_tag
    (layout.dist / f"tensorflow-0.1.0-{tag}-{tag}-{probe.host.platform_tag}.whl").write_bytes(b"a TF wheel")

    def plan_once() -> tuple[Plan, list[Path]]:
        profile = load_profile("example", project, layout.configs, layout.root)
        _preflight(profile, layout)
        source, _ = prepare_source(profile, layout, str(tree))
        chain = profile_files(resolve_profile_path(layout.configs, project, "example"), layout.configs)
        return make_plan(profile, layout, source, BuildOptions()), chain

    plan_once()  # modules imported and the probe and render caches filled, as on a rebuild
    sys.addaudithook(_audit)
    _AUDIT = []
    try:
        plan, chain = plan_once()
        events = _AUDIT
    finally:
        _AUDIT = None
    inputs = {os.path.realpath(p) for p in early._inputs(plan, chain)}
    # Not planning's inputs: Python's own files (imports), and the caches of probes and renders,
    # whose entries are keyed on the files they were made from (which are inputs themselves).
    # psutil reads the host's cores and memory from /proc and /sys; a record takes those as fixed.
    exempt = [os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, *sys.path, str(user_cache_dir()),
                                            "/proc", "/sys"} if p]
    unread: list[str] = []
    for event, args in events:
        assert event in ("open", "os.listdir", "os.scandir"), f"planning ran a process: {args}"
        target = args[0]
        if event == "open":
            assert not isinstance(args[1], str) or set(args[1]) <= set("rbt"), f"planning wrote {target}"
            if isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR):
                raise AssertionError(f"planning wrote {target}")
        if not isinstance(target, (str, os.PathLike)):
            continue  # a file descriptor
        path = os.path.realpath(os.fspath(target))
        if path in inputs or any(path == root or path.startswith(root + os.sep) for root in exempt):
            continue
        unread.append(f"{event} {path}")
    seen = {os.path.realpath(os.fspath(a[0])) for e, a in events if isinstance(a[0], (str, os.PathLike))}
    assert {os.path.realpath(p) for p in chain} <= seen  # the hook did see planning read
    assert plan.required_wheels or project == "tensorflow"
    assert not unread, "planning read files the record does not fingerprint:\n" + "\n".join(unread)


@requires_bazel
def test_a_tree_whose_staged_wheels_would_change_is_not_in_place(tmp_path: Path) -> None:
    # An early Bazel is adopted only if staging the required wheels would write nothing in the
    # tree, a wheel an earlier run staged and this one would remove included.
    from tfwheels.patches import apply_series
    from tfwheels.pipeline import _stage_required, _tree_in_place
    from tfwheels.render import write_rendered

    tree = copy_example("tff-mini", tmp_path / "tff")
    layout = Layout.at(ROOT, tmp_path / "build", tmp_path / "dist")
    layout.dist.mkdir()
    profile_file = tmp_path / "tff-in-tree.yaml"
    profile_file.write_text("extends: tff/example\nrequires:\n  wheels: [\"tensorflow>=0.1\"]\n  tree_folder: dist\n")
    probe = make_plan(load_profile("example", "tensorflow", layout.configs, layout.root), layout, tree,
                      BuildOptions(dry_run=True))
    tag = f"{probe.host.python_tag}-{probe.host.python_tag}-{probe.host.platform_tag}"
    old, new = (layout.dist / f"tensorflow-0.1.{n}-{tag}.whl" for n in (0, 1))
    old.write_bytes(b"the TF wheel of an earlier build")

    def plan() -> Plan:
        profile = load_profile(str(profile_file), "tensorflow_federated", layout.configs, layout.root)
        return make_plan(profile, layout, tree, BuildOptions())

    first = plan()
    write_rendered(first.rendered, tree)  # configure and patch done: only the staging is left
    apply_series(tree, first.series)
    assert not _tree_in_place(first)
    _stage_required(first)
    assert _tree_in_place(first) and (tree / "dist" / old.name).is_file()
    new.write_bytes(b"a newer TF wheel")  # the newest version wins: the old one is unstaged
    second = plan()
    assert second.required_wheels == [new]
    deps = layout.build / "deps" / second.profile.key
    (deps / old.name).unlink()
    shutil.copy(new, deps / new.name)
    shutil.copy(new, tree / "dist" / new.name)  # as if copied, but the record and the old wheel remain
    assert not _tree_in_place(second)
    _stage_required(second)
    assert _tree_in_place(second) and not (tree / "dist" / old.name).exists()
