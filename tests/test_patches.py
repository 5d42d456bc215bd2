"""Patch series on real trees, with real git and real patch: all or nothing, idempotent, revertible."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tfwheels.errors import PatchError, ProfileError
from tfwheels.patches import (
    PatchFile,
    apply_series,
    load_series,
    read_state,
    recover,
    revert_series,
    touched_files,
)

FILES = {
    "a.txt": "one\ntwo\nthree\n",
    "pkg/b.txt": "alpha\nbeta\ngamma\n",
    "pkg/c.txt": "red\ngreen\nblue\n",
}


def diff(path: str, old: str, new: str) -> str:
    """A -p1 unified diff made by the real diff tool."""
    return subprocess.run(
        ["bash", "-c", f"diff -u --label a/{path} --label b/{path} <(printf %s \"$1\") <(printf %s \"$2\")", "_", old, new],
        capture_output=True,
        text=True,
    ).stdout


def make_tree(root: Path, git: bool) -> Path:
    tree = root / "tree"
    for name, text in FILES.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    if git:
        subprocess.run(["git", "init", "-q", str(tree)], check=True)
        subprocess.run(["git", "-C", str(tree), "add", "-A"], check=True)
        subprocess.run(
            ["git", "-C", str(tree), "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "base"],
            check=True,
        )
    return tree


def snapshot(tree: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(tree)): p.read_bytes()
        for p in sorted(tree.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


def series(root: Path, patches: dict[str, str]) -> list[PatchFile]:
    folder = root / "patches"
    folder.mkdir(exist_ok=True)
    result = []
    for name, text in patches.items():
        path = folder / name
        path.write_text(text)
        result.append(PatchFile(name, hashlib.sha256(path.read_bytes()).hexdigest(), path))
    return result


P1 = diff("a.txt", FILES["a.txt"], "one\n2\nthree\n")
P2 = diff("pkg/b.txt", FILES["pkg/b.txt"], "alpha\nBETA\ngamma\n")
P3 = diff("pkg/c.txt", FILES["pkg/c.txt"], "red\nGREEN\nblue\n")
BROKEN = diff("pkg/c.txt", "no\nsuch\ncontent\n", "no\nSUCH\ncontent\n")


@pytest.mark.parametrize("git", [True, False], ids=["git-apply", "patch"])
def test_apply_twice_equals_once_and_revert_restores(tmp_path: Path, git: bool) -> None:
    tree = make_tree(tmp_path, git)
    before = snapshot(tree)
    patches = series(tmp_path, {"0001.patch": P1, "0002.patch": P2})
    report = apply_series(tree, patches)
    assert report.tool == ("git" if git else "patch")
    assert report.applied == ["0001.patch", "0002.patch"]
    assert (tree / "a.txt").read_text() == "one\n2\nthree\n"
    assert (tree / "pkg/b.txt").read_text() == "alpha\nBETA\ngamma\n"
    patched = snapshot(tree)

    again = apply_series(tree, patches)
    assert again.applied == [] and again.skipped == ["0001.patch", "0002.patch"]
    assert snapshot(tree) == patched

    assert [p["file"] for p in read_state(tree)["applied"]] == ["0001.patch", "0002.patch"]
    reverted = revert_series(tree)
    assert reverted.reverted == ["0001.patch", "0002.patch"]
    after = {k: v for k, v in snapshot(tree).items() if not k.startswith(".tfwheels")}
    assert after == before


@pytest.mark.parametrize("git", [True, False], ids=["git-apply", "patch"])
def test_failing_patch_in_the_middle_leaves_tree_byte_identical(tmp_path: Path, git: bool) -> None:
    tree = make_tree(tmp_path, git)
    before = snapshot(tree)
    patches = series(tmp_path, {"0001.patch": P1, "0002.patch": BROKEN, "0003.patch": P2})
    with pytest.raises(PatchError, match=r"patch 0002.patch does not apply .* nothing was changed"):
        apply_series(tree, patches)
    assert snapshot(tree) == before
    assert not (tree / ".tfwheels").exists()


def test_patch_applied_by_hand_is_detected_and_skipped(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, git=False)
    (tree / "a.txt").write_text("one\n2\nthree\n")  # someone applied 0001 already
    patches = series(tmp_path, {"0001.patch": P1, "0002.patch": P2})
    report = apply_series(tree, patches)
    assert report.skipped == ["0001.patch"] and report.applied == ["0002.patch"]


def test_appending_a_patch_applies_only_the_new_one(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, git=True)
    before = snapshot(tree)
    apply_series(tree, series(tmp_path, {"0001.patch": P1}))
    report = apply_series(tree, series(tmp_path, {"0001.patch": P1, "0002.patch": P3}))
    assert report.skipped == ["0001.patch"] and report.applied == ["0002.patch"]
    revert_series(tree)
    assert {k: v for k, v in snapshot(tree).items() if not k.startswith(".tfwheels")} == before


def test_changed_series_starts_again_from_originals(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, git=False)
    apply_series(tree, series(tmp_path, {"0001.patch": P1, "0002.patch": P2}))
    report = apply_series(tree, series(tmp_path, {"0003.patch": P3}))
    assert report.reverted == ["0001.patch", "0002.patch"] and report.applied == ["0003.patch"]
    assert (tree / "a.txt").read_text() == FILES["a.txt"]
    assert (tree / "pkg/c.txt").read_text() == "red\nGREEN\nblue\n"


def test_interrupted_move_rolls_back_on_next_run(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, git=False)
    before = snapshot(tree)
    apply_series(tree, series(tmp_path, {"0001.patch": P1, "0002.patch": P2}))
    # Simulate a crash between moving the files in and recording the series.
    state_path = tree / ".tfwheels/state.json"
    import json

    state = json.loads(state_path.read_text())
    state["pending"] = list(state["originals"])
    state["applied"] = []
    state_path.write_text(json.dumps(state))
    assert recover(tree)
    assert {k: v for k, v in snapshot(tree).items() if not k.startswith(".tfwheels")} == before


def test_paths_outside_the_tree_are_refused(tmp_path: Path) -> None:
    evil = "--- a/../outside.txt\n+++ b/../outside.txt\n@@ -1 +1 @@\n-x\n+y\n"
    with pytest.raises(PatchError, match="outside the source tree"):
        touched_files(evil)
    assert touched_files(P1 + P2) == ["a.txt", "pkg/b.txt"]


def test_sha256_mismatch_is_refused(tmp_path: Path) -> None:
    from conftest import ROOT
    from tfwheels.profiles import load_profile

    profile = load_profile("example", "tensorflow", ROOT / "configs", ROOT)
    patches = tmp_path / "patches"
    target = patches / profile.patches[0].file
    target.parent.mkdir(parents=True)
    target.write_text((ROOT / "patches" / profile.patches[0].file).read_text() + "\n")
    with pytest.raises(PatchError, match=r"sha256 of .* is [0-9a-f]{64}, the profile pins"):
        load_series(profile, patches)
    target.unlink()
    with pytest.raises(ProfileError, match="not found under"):
        load_series(profile, patches)
