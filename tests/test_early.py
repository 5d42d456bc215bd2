"""Starting a rebuild's Bazel before the plan: held output, cancelling, and the record it comes from."""

from __future__ import annotations

import io
import shutil
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
