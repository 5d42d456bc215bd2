"""Hostile and broken profiles: exit 2, one line naming file and line, nothing written, no traceback.

Each case runs through the real CLI (``invoke build-tf --profile PATH --dry-run``) and through
the library; Hypothesis then mutates the real profiles and holds every result to the same rules.
"""

from __future__ import annotations

import random
import re
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from faultkit import bounded, count, invoke_measured, peak_rss_mb
from tfwheels.errors import ProfileError
from tfwheels.profiles import list_profiles, load_profile

CONFIGS = ROOT / "configs"
EXAMPLE = (CONFIGS / "tf" / "example.yaml").read_text()
LINE = re.compile(r"^error: (?P<file>\S+?):(?P<line>\d+) \S")

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
)

CASES: dict[str, bytes] = {
    "syntax": b"project: [tensorflow\n",
    "tabs": b"project: tensorflow\nbazel:\n\tversion: 1\n",
    "non-utf8": b"project: tensorflow\ndescription: caf\xe9\n",
    "nul": b"project: tensorflow\n\x00\n",
    "empty": b"",
    "only-comments": b"# nothing here\n",
    "top-level-list": b"- project\n- tensorflow\n",
    "top-level-scalar": b"tensorflow\n",
    "duplicate-keys": b"project: tensorflow\nproject: tensorflow_federated\n",
    "python-tag": b"project: !!python/object/apply:os.system ['touch /tmp/tfwheels-pwned']\n",
    "custom-tag": b"project: !mytag tensorflow\n",
    "merge-key": b"base: &b {project: tensorflow}\n<<: *b\n",
    "alias-bomb": BILLION_LAUGHS.encode(),
    "deep-nesting": ("a:\n" + "".join("  " * i + "b:\n" for i in range(1, 60)) + "  " * 60 + "c: 1\n").encode(),
    "too-large": b"description: " + b"x" * 300_000 + b"\n",
    "wrong-type": EXAMPLE.replace('version: "0.1.0"', "version: [0, 1]").encode(),
    "unknown-key": EXAMPLE.replace("wheel:\n", "wheeel:\n").encode(),
    "extends-missing": b"extends: no-such-profile\n",
    "patch-escapes": EXAMPLE.replace("file: tf/example/", "file: ../../etc/").encode(),
    "patch-absolute": EXAMPLE.replace("file: tf/example/", "file: /etc/").encode(),
    "newline-value": EXAMPLE.replace("distribution: tensorflow", 'distribution: "tf\\nbuild --x"').encode(),
    "leading-dash": EXAMPLE.replace("distribution: tensorflow", 'distribution: "--output_base=/"').encode(),
    "flag-not-flag": EXAMPLE.replace("configs: [opt]", "configs: [opt, '; rm -rf /']").encode(),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_profile_via_cli(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(CASES[case])
    env = {"TFWHEELS_BUILD": str(tmp_path / "build"), "TFWHEELS_DIST": str(tmp_path / "dist")}
    with bounded(5.0):
        result, peak_mb = invoke_measured("build-tf", "--profile", str(path), "--dry-run", cwd=ROOT, env=env)
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"
    count("profiles")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    match = LINE.match(lines[0])
    assert match and match["file"].endswith(path.name) or "extends" in lines[0], lines[0]
    assert not (tmp_path / "build").exists() and not (tmp_path / "dist").exists()
    assert not Path("/tmp/tfwheels-pwned").exists()


def test_extends_cycle(tmp_path: Path) -> None:
    (tmp_path / "tf").mkdir()
    (tmp_path / "tf" / "a.yaml").write_text("extends: b\n")
    (tmp_path / "tf" / "b.yaml").write_text("extends: a\n")
    with bounded(5.0), pytest.raises(ProfileError, match="extends: cycle"):
        load_profile("a", "tensorflow", tmp_path, tmp_path)
    count("profiles")


def test_patch_symlink_leaving_patches_is_refused(tmp_path: Path) -> None:
    from tfwheels.patches import load_series

    profile = load_profile("example", "tensorflow", CONFIGS, ROOT)
    patches = tmp_path / "patches" / "tf" / "example"
    patches.mkdir(parents=True)
    outside = tmp_path / "outside.patch"
    outside.write_text("x")
    (patches / Path(profile.patches[0].file).name).symlink_to(outside)
    with pytest.raises(ProfileError, match="leaves patches/"):
        load_series(profile, tmp_path / "patches")
    count("profiles")


def _mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    choice = rng.randrange(8)
    i = rng.randrange(len(lines))
    if choice == 0:
        del lines[i]
    elif choice == 1:
        lines.insert(i, lines[rng.randrange(len(lines))])
    elif choice == 2:
        pos = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:pos] + rng.choice(string.printable) + lines[i][pos:]
    elif choice == 3:
        lines[i] = lines[i].replace(":", "", 1)
    elif choice == 4:
        lines[i] = "\t" + lines[i]
    elif choice == 5:
        lines[i] = lines[i].replace("  ", "", 1)
    elif choice == 6:
        lines[i] = re.sub(r"[\w.%/-]+$", rng.choice(["-x", "''", "[]", "{}", "!!str 1", "~", "*a"]), lines[i])
    else:
        lines.insert(i, rng.choice(["extends: tf/example\n", "x: &a [1]\n", "y: *a\n", "- z\n"]))
    return "".join(lines)


SOURCES = sorted({p.path.read_text() for p in list_profiles(CONFIGS)})


@settings(max_examples=220, deadline=5000, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 4), base=st.sampled_from(SOURCES))
def test_mutated_real_profiles_never_crash(tmp_path: Path, seed: int, rounds: int, base: str) -> None:
    rng = random.Random(seed)
    text = base
    for _ in range(rounds):
        text = _mutate(text, rng)
    folder = tmp_path / f"m{seed}"
    (folder / "tf").mkdir(parents=True, exist_ok=True)
    (folder / "tf" / "m.yaml").write_text(text)
    with bounded(5.0):
        try:
            load_profile(str(folder / "tf" / "m.yaml"), "tensorflow", CONFIGS, ROOT)
        except ProfileError as exc:
            message = str(exc)
            assert "\n" not in message and re.match(r"^\S+?:\d+ ", message), message
    assert peak_rss_mb() < 200 * 4  # the whole test process, a generous bound; each case is far smaller
    count("profiles")
