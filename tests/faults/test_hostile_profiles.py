"""Hostile and broken profiles: exit 2, one line naming file and line, nothing written, no traceback.

Each case runs through the real CLI (``invoke build-tf --profile PATH --dry-run``) and through
the library; Hypothesis then mutates the real profiles and holds every result to the same rules.
"""

from __future__ import annotations

import random
import re
import shutil
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from faultkit import bounded, count, invoke_measured
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
    "deep-flow-nesting": b"a: " + b"[" * 5000 + b"\n",
    "deep-flow-mapping": b"a: " + b"{b: " * 5000 + b"\n",
    "deep-block-sequence": b"a:\n  " + b"- " * 5000 + b"x\n",
    "huge-int": b"project: tensorflow\nconfigure:\n  TF_NEED_CUDA: " + b"9" * 5000 + b"\n",
    "newline-key": EXAMPLE.replace("wheel:\n", '"wheel\\nerror: forged line":\n', 1).encode(),
    "ansi-key": EXAMPLE.replace("wheel:\n", '"\\e[31mwheel\\e[0m":\n', 1).encode(),
    "ansi-env-key": (EXAMPLE + 'env:\n  "A\\e]0;title\\aB": x\n').encode(),
}

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


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
    assert not CONTROL.search(result.stderr), repr(result.stderr)
    match = LINE.match(lines[0])
    assert match and match["file"].endswith(path.name) or "extends" in lines[0], lines[0]
    assert not (tmp_path / "build").exists() and not (tmp_path / "dist").exists()
    assert not Path("/tmp/tfwheels-pwned").exists()


def test_a_sparse_1gb_profile_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "sparse.yaml"
    with path.open("wb") as handle:
        handle.truncate(1024**3)  # 1 GB of NULs that take no disk
    env = {"TFWHEELS_BUILD": str(tmp_path / "build"), "TFWHEELS_DIST": str(tmp_path / "dist")}
    with bounded(5.0):
        result, peak_mb = invoke_measured("build-tf", "--profile", str(path), "--dry-run", cwd=ROOT, env=env)
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {path}:1 file is {1024**3} bytes, over the 262144 byte limit for a profile"
    assert not (tmp_path / "build").exists() and not (tmp_path / "dist").exists()
    count("profiles")


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


PROJECTS = {"tf": "tensorflow", "tff": "tensorflow_federated"}
# Every YAML file a profile may read: profiles, their _bases, shared/ and remote/ fragments. Not
# facts/: tff_facts.py reports a bad facts file as "FILE FIELD: problem", without the line.
TARGETS = sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml") if p.parts[-2] != "facts")
BUILDABLE = sorted(str(p.path.relative_to(CONFIGS)) for p in list_profiles(CONFIGS))
FUZZ = {"examples": 0, "past_yaml": 0}


def _chain(rel: str) -> list[str]:
    """``rel`` and the files its ``extends:`` chain reads (relative to configs/)."""
    import yaml

    chain: list[str] = []
    while rel not in chain and (CONFIGS / rel).is_file():
        chain.append(rel)
        parent = (yaml.safe_load((CONFIGS / rel).read_text()) or {}).get("extends")
        if not isinstance(parent, str):
            break
        rel = f"{parent}.yaml" if "/" in parent else str(Path(rel).parent / f"{parent}.yaml")
    return chain


def _readers(target: str) -> list[str]:
    """The buildable profiles whose chain reads ``target`` (any profile of its folder if none)."""
    readers = [p for p in BUILDABLE if target in _chain(p)]
    folder = target.split("/")[0]
    return readers or [p for p in BUILDABLE if p.startswith(f"{folder}/")] or BUILDABLE


def _copy_project(dest: Path) -> Path:
    """configs/ and patches/ copied whole, so every extends: and patch path resolves as in the
    repository; returns the copied configs/."""
    shutil.copytree(CONFIGS, dest / "configs")
    shutil.copytree(ROOT / "patches", dest / "patches")
    return dest / "configs"


@pytest.fixture(scope="module")
def fuzz_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_project(tmp_path_factory.mktemp("fuzz-project"))


def _mutated(target: str, seed: int, rounds: int) -> str:
    rng = random.Random(seed)
    text = (CONFIGS / target).read_text()
    for _ in range(rounds):
        text = _mutate(text, rng)
    return text


@settings(max_examples=220, deadline=5000, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 4), target=st.sampled_from(TARGETS), pick=st.integers(0, 999))
def test_mutated_real_profiles_never_crash(fuzz_project: Path, seed: int, rounds: int, target: str, pick: int) -> None:
    import psutil

    readers = _readers(target)
    profile = readers[pick % len(readers)]
    path = fuzz_project / target
    original = path.read_bytes()
    path.write_text(_mutated(target, seed, rounds))
    before = psutil.Process().memory_info().rss
    try:
        with bounded(5.0):
            try:
                load_profile(str(fuzz_project / profile), PROJECTS[profile.split("/")[0]], fuzz_project,
                             fuzz_project.parent)
                past_yaml = True
            except ProfileError as exc:
                message = str(exc)
                assert "\n" not in message and re.match(r"^\S+?:\d+ ", message), message
                assert not CONTROL.search(message), repr(message)
                past_yaml = "YAML" not in message and "control character" not in message
    finally:
        path.write_bytes(original)
    assert (psutil.Process().memory_info().rss - before) / 1024**2 < 200
    FUZZ["examples"] += 1
    FUZZ["past_yaml"] += past_yaml
    count("profiles")


def test_the_fuzz_gets_past_yaml_parsing_mostly() -> None:
    if not FUZZ["examples"]:
        pytest.skip("the Hypothesis fuzz did not run in this session")
    assert FUZZ["examples"] >= 200
    assert FUZZ["past_yaml"] >= FUZZ["examples"] // 2, FUZZ


CLI_SAMPLE = 20


def test_mutated_profiles_through_the_cli(tmp_path: Path) -> None:
    """A seeded sample of the same mutations, each in a fresh copy of the project, through
    ``invoke build-tf|build-tff --profile NAME --dry-run``: exit 0 or 2, a refusal on one line
    free of control characters, no traceback, within 5 s and 200 MB, and nothing written."""
    rng = random.Random(20261201)
    codes = []
    for i in range(CLI_SAMPLE):
        target = rng.choice(TARGETS)
        profile = rng.choice(_readers(target))
        root = tmp_path / f"case{i}"
        configs = _copy_project(root)
        mutated = _mutated(target, rng.randrange(2**32), rng.randint(1, 4))
        (configs / target).write_text(mutated)
        before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        task = "build-tf" if profile.startswith("tf/") else "build-tff"
        env = {"TFWHEELS_PROJECT": str(root), "TFWHEELS_BUILD": str(root / "build"),
               "TFWHEELS_DIST": str(root / "dist"), "HOME": str(tmp_path / "home"),  # probe cache: kept
               "XDG_CACHE_HOME": str(tmp_path / "home" / ".cache")}
        with bounded(5.0):
            result, peak_mb = invoke_measured(task, "--profile", Path(profile).stem, "--dry-run", cwd=ROOT, env=env)
        where = f"case {i}: {target} read by {profile}"
        assert peak_mb < 200, f"{where}: peak RSS {peak_mb:.0f} MB"
        assert result.returncode in (0, 2), f"{where}: {result.stderr[-2000:]}"
        assert "Traceback" not in result.stderr + result.stdout, f"{where}: {result.stderr[-2000:]}"
        assert not CONTROL.search(result.stderr), f"{where}: {result.stderr!r}"
        if result.returncode == 2:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), f"{where}: {result.stderr}"
        after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        assert after == before, f"{where}: files written: {sorted(set(after) ^ set(before))}"
        assert not (root / "build").exists() and not (root / "dist").exists(), where
        codes.append(result.returncode)
        count("profiles")
    assert 2 in codes, codes  # the sample does reach refusals
