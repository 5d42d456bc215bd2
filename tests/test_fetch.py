"""invoke fetch: real git, real bare repositories made in tmp_path, real tags that move."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, invoke

from tfwheels.fetch import fetch_source
from tfwheels.layout import Layout
from tfwheels.profiles import load_profile
from tfwheels.source import SourceError


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )
    return result.stdout.strip()


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, str]:
    """A bare repository with tag v1.0 on its first commit; returns (bare path, that commit)."""
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    (work / "README").write_text("v1\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    git("tag", "v1.0", cwd=work)
    bare = tmp_path / "upstream.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    return bare, git("rev-parse", "HEAD", cwd=work)


def move_tag(bare: Path, tmp_path: Path) -> str:
    """Re-point v1.0 at a new commit upstream, as a force-pushed tag would; returns it."""
    work = tmp_path / "mover"
    git("clone", "-q", str(bare), str(work), cwd=tmp_path)
    (work / "README").write_text("moved\n")
    git("commit", "-q", "-am", "two", cwd=work)
    git("tag", "-f", "v1.0", cwd=work)
    git("push", "-q", "-f", "origin", "v1.0", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def write_profile(folder: Path, url: Path, commit: str) -> Path:
    path = folder / "configs" / "tf" / "pinned.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""project: tensorflow
version: "1.0"
platform: linux_x86_64
source:
  git: {{url: "{url}", ref: v1.0, commit: {commit}}}
bazel: {{version: "6.5.0", targets: ["//:all"]}}
package: {{kind: outputs, directory: wheels}}
wheel: {{distribution: tensorflow}}
"""
    )
    return path


def fetch(tmp_path: Path, url: Path, commit: str, *, force: bool = False) -> tuple[Path, str]:
    write_profile(tmp_path, url, commit)
    profile = load_profile("pinned", "tensorflow", tmp_path / "configs", tmp_path)
    layout = Layout.at(tmp_path, tmp_path / "build", tmp_path / "dist")
    return fetch_source(profile, layout, force=force)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_clones_the_tag_at_the_pinned_commit(tmp_path: Path, upstream: tuple[Path, str]) -> None:
    bare, commit = upstream
    tree, done = fetch(tmp_path, bare, commit)
    assert tree == tmp_path / "build" / "src" / "tf-pinned"
    assert done.startswith("cloned ") and commit[:12] in done
    assert git("rev-parse", "HEAD", cwd=tree) == commit
    assert (tree / "README").read_text() == "v1\n"
    # tfwheels' own files (rendered rc files, patch state) never make the checkout dirty.
    assert "/.bazelrc.user" in (tree / ".git" / "info" / "exclude").read_text()


def test_a_moved_tag_is_an_error_and_leaves_nothing(tmp_path: Path, upstream: tuple[Path, str]) -> None:
    bare, commit = upstream
    moved = move_tag(bare, tmp_path)
    with pytest.raises(SourceError) as info:
        fetch(tmp_path, bare, commit)
    assert f"resolves to {moved}" in str(info.value) and "the tag moved" in str(info.value)
    assert leftovers(tmp_path / "build" / "src") == []


def test_a_failed_clone_leaves_nothing(tmp_path: Path, upstream: tuple[Path, str]) -> None:
    _, commit = upstream
    with pytest.raises(SourceError) as info:
        fetch(tmp_path, tmp_path / "no-such-repo.git", commit)
    assert "git clone of" in str(info.value)
    assert leftovers(tmp_path / "build" / "src") == []


def test_reuses_a_clean_tree_at_the_pinned_commit(tmp_path: Path, upstream: tuple[Path, str]) -> None:
    bare, commit = upstream
    tree, _ = fetch(tmp_path, bare, commit)
    (tree / ".bazelrc.user").write_text("build --config=opt\n")  # rendered by tfwheels: ours
    again, done = fetch(tmp_path, bare, commit)
    assert again == tree and done.startswith("reused ")


def test_local_changes_are_refused_unless_forced(tmp_path: Path, upstream: tuple[Path, str]) -> None:
    bare, commit = upstream
    tree, _ = fetch(tmp_path, bare, commit)
    (tree / "README").write_text("my edit\n")
    with pytest.raises(SourceError) as info:
        fetch(tmp_path, bare, commit)
    assert "local changes (README)" in str(info.value) and "--force" in str(info.value)
    _, done = fetch(tmp_path, bare, commit, force=True)
    assert done.startswith("reused ")
    assert (tree / "README").read_text() == "my edit\n"


def test_a_tree_at_another_commit_needs_force(tmp_path: Path, upstream: tuple[Path, str]) -> None:
    bare, commit = upstream
    tree, _ = fetch(tmp_path, bare, commit)
    moved = move_tag(bare, tmp_path)
    with pytest.raises(SourceError):
        fetch(tmp_path, bare, moved)
    _, done = fetch(tmp_path, bare, moved, force=True)
    assert done.startswith("cloned ") and git("rev-parse", "HEAD", cwd=tree) == moved


def test_invoke_fetch_end_to_end(tmp_path: Path, upstream: tuple[Path, str]) -> None:
    bare, commit = upstream
    path = write_profile(tmp_path, bare, commit)
    dest = tmp_path / "elsewhere"
    ok = invoke("fetch", "--profile", str(path), "--dest", str(dest))
    assert ok.returncode == 0, ok.stderr
    assert "cloned" in ok.stdout and git("rev-parse", "HEAD", cwd=dest) == commit
    (dest / "README").write_text("dirty\n")
    refused = invoke("fetch", "--profile", str(path), "--dest", str(dest))
    assert refused.returncode == SourceError.exit_code
    assert "local changes" in refused.stderr and "Traceback" not in refused.stderr


def test_fetch_copies_a_path_profile(tmp_path: Path) -> None:
    profile = load_profile("example", "tensorflow", ROOT / "configs", ROOT)
    layout = Layout.at(ROOT, tmp_path / "build", tmp_path / "dist")
    tree, done = fetch_source(profile, layout, tmp_path / "tf-mini")
    assert done.startswith("copied ") and (tree / "WORKSPACE").is_file()
    assert fetch_source(profile, layout, tmp_path / "tf-mini")[1].startswith("reused ")


# --- a source pinned by commit alone (ref = the commit's full sha: an untagged upstream HEAD) -----


@pytest.fixture
def untagged(tmp_path: Path) -> tuple[Path, str, str]:
    """A bare repository whose main has two commits and no tags, configured to serve commits by
    sha as GitHub does; returns (bare path, the first commit (not a tip), the tip)."""
    work = tmp_path / "untagged-work"
    work.mkdir()
    git("init", "-q", cwd=work)
    (work / "README").write_text("first\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    (work / "README").write_text("tip\n")
    git("commit", "-q", "-am", "two", cwd=work)
    bare = tmp_path / "untagged.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    git("config", "uploadpack.allowReachableSHA1InWant", "true", cwd=bare)
    return bare, first, git("rev-parse", "HEAD", cwd=work)


def fetch_sha(tmp_path: Path, url: Path, commit: str, ref: str | None = None) -> tuple[Path, str]:
    path = write_profile(tmp_path, url, f'"{commit}"')  # quoted: an all-digit sha is no YAML int
    path.write_text(path.read_text().replace("ref: v1.0", f'ref: "{ref or commit}"'))
    profile = load_profile("pinned", "tensorflow", tmp_path / "configs", tmp_path)
    layout = Layout.at(tmp_path, tmp_path / "build", tmp_path / "dist")
    return fetch_source(profile, layout)


def only_protocol_v0(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make git speak protocol v0, where upload-pack checks allowReachableSHA1InWant (v2 does not)."""
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.version")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "0")


@pytest.mark.parametrize("protocol", ["default", "v0"])
def test_a_commit_pin_fetches_exactly_that_commit_shallow(
    tmp_path: Path, untagged: tuple[Path, str, str], protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare, first, _tip = untagged
    if protocol == "v0":
        only_protocol_v0(monkeypatch)
    tree, done = fetch_sha(tmp_path, bare, first)
    assert done.startswith("fetched ") and first[:12] in done
    assert git("rev-parse", "HEAD", cwd=tree) == first
    assert (tree / "README").read_text() == "first\n"
    assert (tree / ".git" / "shallow").read_text().split() == [first]  # depth 1: nothing else
    assert git("rev-list", "--all", cwd=tree).split() == [first]
    assert git("tag", cwd=tree) == ""
    assert "/.bazelrc.user" in (tree / ".git" / "info" / "exclude").read_text()
    # A second fetch reuses the clean tree at the pin.
    assert fetch_sha(tmp_path, bare, first)[1].startswith("reused ")


def test_a_server_that_refuses_commits_by_sha_is_one_clear_line(
    tmp_path: Path, untagged: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bare, first, _tip = untagged
    git("config", "--unset", "uploadpack.allowReachableSHA1InWant", cwd=bare)
    only_protocol_v0(monkeypatch)
    with pytest.raises(SourceError) as info:
        fetch_sha(tmp_path, bare, first)
    message = str(info.value)
    assert "\n" not in message
    assert f"refused to send commit {first} by its sha" in message
    assert "uploadpack.allowReachableSHA1InWant" in message and "pin a tag" in message
    assert leftovers(tmp_path / "build" / "src") == []


def test_a_commit_the_server_lacks_is_one_clear_line(tmp_path: Path, untagged: tuple[Path, str, str]) -> None:
    bare, _first, _tip = untagged
    missing = "1" * 40
    with pytest.raises(SourceError) as info:
        fetch_sha(tmp_path, bare, missing)
    assert f"refused to send commit {missing} by its sha" in str(info.value)
    assert "not our ref" in str(info.value) and "\n" not in str(info.value)
    assert leftovers(tmp_path / "build" / "src") == []


def test_a_sha_ref_that_is_not_the_pinned_commit_is_refused(
    tmp_path: Path, untagged: tuple[Path, str, str]
) -> None:
    bare, first, tip = untagged
    with pytest.raises(SourceError, match=f"source.git.ref {tip} is a commit, but source.git.commit pins {first}"):
        fetch_sha(tmp_path, bare, first, ref=tip)
    assert leftovers(tmp_path / "build" / "src") == []


def test_a_tree_at_another_commit_is_refetched_by_sha_with_force(
    tmp_path: Path, untagged: tuple[Path, str, str]
) -> None:
    bare, first, tip = untagged
    tree, _ = fetch_sha(tmp_path, bare, tip)
    with pytest.raises(SourceError, match="pass --force"):
        fetch_sha(tmp_path, bare, first)
    path = tmp_path / "configs" / "tf" / "pinned.yaml"
    profile = load_profile(str(path), "tensorflow", tmp_path / "configs", tmp_path)
    _, done = fetch_source(profile, Layout.at(tmp_path, tmp_path / "build", tmp_path / "dist"), force=True)
    assert done.startswith("fetched ") and git("rev-parse", "HEAD", cwd=tree) == first


def test_invoke_fetch_by_sha_end_to_end(tmp_path: Path, untagged: tuple[Path, str, str]) -> None:
    bare, first, _tip = untagged
    path = write_profile(tmp_path, bare, first)
    path.write_text(path.read_text().replace("ref: v1.0", f"ref: {first}"))
    dest = tmp_path / "by-sha"
    ok = invoke("fetch", "--profile", str(path), "--dest", str(dest))
    assert ok.returncode == 0, ok.stderr
    assert "fetched" in ok.stdout and git("rev-parse", "HEAD", cwd=dest) == first
    git("config", "--unset", "uploadpack.allowReachableSHA1InWant", cwd=bare)
    refused = invoke(
        "fetch", "--profile", str(path), "--dest", str(tmp_path / "refused"),
        env={"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.version", "GIT_CONFIG_VALUE_0": "0"},
    )
    assert refused.returncode == SourceError.exit_code
    assert "refused to send commit" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "refused").exists()


def test_wheels_a_build_staged_into_a_checkout_are_not_local_changes(tmp_path: Path) -> None:
    import json

    from tfwheels.run import run as run_tool
    from tfwheels.source import user_changes

    tree = tmp_path / "tree"
    tree.mkdir()
    for argv in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                 ["git", "config", "user.name", "t"]):
        run_tool(argv, cwd=tree, echo=False)
    (tree / "README").write_text("x\n")
    run_tool(["git", "add", "README"], cwd=tree, echo=False)
    run_tool(["git", "commit", "-q", "-m", "init"], cwd=tree, echo=False)
    (tree / "dist").mkdir()
    (tree / "dist" / "tensorflow-2.21.0-cp312-cp312-linux_x86_64.whl").write_bytes(b"PK")
    (tree / ".tfwheels").mkdir()
    (tree / ".tfwheels" / "staged-wheels.json").write_text(
        json.dumps({"folder": "dist", "wheels": ["tensorflow-2.21.0-cp312-cp312-linux_x86_64.whl"]})
    )
    changes = user_changes(tree)
    assert "dist/tensorflow-2.21.0-cp312-cp312-linux_x86_64.whl" not in changes
    (tree / "dist" / "mine.txt").write_text("a user's file")
    assert "dist/mine.txt" in user_changes(tree)
