"""Locks between real processes: refusal names the holder; SIGKILL never leaves a stale lock."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfwheels.locks import LockBusy, hold

HOLDER = """
import sys, time
from pathlib import Path
from tfwheels.locks import hold
with hold(Path(sys.argv[1]), "the test tree", wait=False):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def start_holder(lock: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_run_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    lock = tmp_path / "tree.lock"
    proc = start_holder(lock, 30)
    try:
        with pytest.raises(LockBusy) as info, hold(lock, "the test tree", wait=False):
            pass
        assert f"pid {proc.pid}: " in str(info.value) and "--wait" in str(info.value)
        assert info.value.exit_code == 75
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_lock_of_a_killed_process_never_blocks(tmp_path: Path) -> None:
    lock = tmp_path / "tree.lock"
    proc = start_holder(lock, 30)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    start = time.monotonic()
    with hold(lock, "the test tree", wait=False):
        assert (tmp_path / "tree.lock.holder").is_file()
    assert time.monotonic() - start < 1.0
    assert not (tmp_path / "tree.lock.holder").exists()


def test_wait_waits_for_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "tree.lock"
    proc = start_holder(lock, 1.0)
    start = time.monotonic()
    with hold(lock, "the test tree", wait=True, timeout=20):
        waited = time.monotonic() - start
    proc.wait()
    proc.stdout.close()
    assert 0.3 < waited < 20


def test_collect_waits_for_another_collect_into_the_same_dist_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tfwheels.locks import dist_lock_path
    from tfwheels.profiles import load_profile
    from tfwheels.wheels import collect

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dist = tmp_path / "dist"
    lock = dist_lock_path(dist)
    assert lock == dist_lock_path(tmp_path / "x" / ".." / "dist")  # one lock per real folder
    assert dist not in lock.parents  # dist/ holds only wheels and the manifest
    proc = start_holder(lock, 1.5)
    root = Path(__file__).resolve().parent.parent
    profile = load_profile("example", "tensorflow", root / "configs", root)
    start = time.monotonic()
    try:
        result = collect([], profile, dist, tmp_path / "build" / "rejected", {}, allow_problems=False)
    finally:
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert time.monotonic() - start >= 1.0  # it waited for the holder ...
    assert result.accepted == [] and result.rejected == [] and dist.is_dir()  # ... then collected
    assert f"waiting: dist folder {dist} is in use by pid {proc.pid}" in capsys.readouterr().err


def test_patch_and_configure_refuse_a_tree_a_build_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import copy_example, invoke

    from tfwheels.locks import tree_lock_path

    tree = copy_example("tf-mini", tmp_path / "tree")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "TFWHEELS_BUILD": str(tmp_path / "build")}
    monkeypatch.setenv("XDG_CACHE_HOME", env["XDG_CACHE_HOME"])
    proc = start_holder(tree_lock_path(tree), 30)
    try:
        for task in ("patch", "configure"):
            result = invoke(task, "--profile", "example", "--source", str(tree), env=env)
            assert result.returncode == 75, result.stderr
            assert f"is in use by pid {proc.pid}" in result.stderr and "Traceback" not in result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert not (tree / ".tfwheels").exists() and not (tree / ".bazelrc.user").exists()


def test_the_holder_file_keeps_no_credential_of_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["invoke", "build-tf", "--remote-cache", "https://me:s3cret@cache.example/x", "--profile", "p"]
    monkeypatch.setattr(sys, "argv", argv)
    with hold(tmp_path / "tree.lock", "the test tree", wait=False):
        text = (tmp_path / "tree.lock.holder").read_text()
    assert "s3cret" not in text and "me:" not in text
    assert "--remote-cache https://***@cache.example/x --profile p" in text
