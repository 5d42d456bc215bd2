"""What each TensorFlow Federated release requires of TensorFlow and Python, held against TFF
profiles when they load, so a profile that pairs TFF with a TensorFlow or Python it refuses
fails in a second, not after an hour of Bazel.

The facts live in ``configs/facts/tff_requirements.yaml`` (read from each release's METADATA or
pyproject.toml; the file says which). A release not listed there is not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from tfwheels.errors import ProfileError
from tfwheels.yamlsafe import load_located

FACTS_FILE = Path("facts") / "tff_requirements.yaml"
_TF_LINES = range(41)  # tensorflow 2.0 ... 2.40: the versions a range is probed with
_PYTHONS = [f"3.{minor}" for minor in range(6, 20)]

Where = Callable[[tuple[str | int, ...]], str]


def _requirement(value: str) -> str:
    try:
        Requirement(value)
    except InvalidRequirement as exc:
        msg = f"{value!r} is not a requirement: {str(exc).splitlines()[0]}"
        raise ValueError(msg) from exc
    return value


def _release(value: str) -> str:
    try:
        Version(value)
    except InvalidVersion as exc:
        msg = f"{value!r} is not a TFF release version such as 0.87.0"
        raise ValueError(msg) from exc
    return value


def _specifier(value: str) -> str:
    try:
        SpecifierSet(value)
    except InvalidSpecifier as exc:
        msg = f"{value!r} is not a version range: {str(exc).splitlines()[0]}"
        raise ValueError(msg) from exc
    return value


class TffRelease(BaseModel):
    """What one TFF release requires, and where that was read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tensorflow: Annotated[str, AfterValidator(_requirement)]
    requires_python: Annotated[str, AfterValidator(_specifier)]
    evidence: str


class TffFacts(BaseModel):
    """The facts file: TFF release -> what it requires."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tensorflow_federated: dict[Annotated[str, AfterValidator(_release)], TffRelease]


def load_facts(configs: Path) -> TffFacts | None:
    """The facts under ``configs`` (None when the file is absent: nothing is checked)."""
    path = configs / FACTS_FILE
    if not path.is_file():
        return None
    located = load_located(path, str(path))
    try:
        return TffFacts.model_validate(located.data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        field = ".".join(str(part) for part in loc)
        problem = str(first["msg"]).removeprefix("Value error, ").splitlines()[0]
        # The line of the value, else of the nearest enclosing key that has one.
        line = next((located.lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in located.lines), 1)
        msg = f"{path}:{line} {field}: {problem}; fix the facts file"
        raise ProfileError(msg) from None


def check_tff_profile(
    version: str,
    wheels: Iterable[str],
    python: str | None,
    configs: Path,
    where: Where,
) -> None:
    """Raise ProfileError when the profile's ``requires.wheels`` or ``python.version`` disagree
    with what TFF ``version`` requires. ``where(field path)`` gives ``file:line`` for messages.
    """
    facts = load_facts(configs)
    releases = facts.tensorflow_federated if facts else {}
    release = next((r for v, r in releases.items() if Version(v) == Version(version)), None)
    if release is None:
        return
    facts_file = f"configs/{FACTS_FILE.as_posix()}"
    _check_tensorflow(version, list(wheels), release, facts_file, where)
    if python is not None:
        _check_python(version, python, release, facts_file, where)


def _check_tensorflow(
    version: str, wheels: list[str], release: TffRelease, facts_file: str, where: Where
) -> None:
    needed = Requirement(release.tensorflow)
    for index, text in enumerate(wheels):
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue  # plan.py names a requirement it cannot read
        if canonicalize_name(requirement.name) != canonicalize_name(needed.name):
            continue
        outside = admitted_outside(requirement.specifier, needed.specifier)
        if outside is None:
            return
        msg = (
            f"{where(('requires', 'wheels', index))} requires.wheels: {text!r} admits "
            f"tensorflow {outside}, but TensorFlow Federated {version} requires "
            f"{release.tensorflow} ({facts_file}); require {release.tensorflow!r} instead"
        )
        raise ProfileError(msg)
    msg = (
        f"{where(('requires', 'wheels'))} requires.wheels: names no {needed.name}, but "
        f"TensorFlow Federated {version} requires {release.tensorflow} ({facts_file}); "
        f"add {release.tensorflow!r}"
    )
    raise ProfileError(msg)


def _check_python(
    version: str, python: str, release: TffRelease, facts_file: str, where: Where
) -> None:
    allowed = SpecifierSet(release.requires_python)
    if allowed.contains(python):
        return
    fits = [candidate for candidate in _PYTHONS if allowed.contains(candidate)]
    hint = f"e.g. {fits[-1]}" if fits else "none is known"
    msg = (
        f"{where(('python', 'version'))} python.version: {python}, but TensorFlow Federated "
        f"{version} requires Python {release.requires_python} ({facts_file}); set "
        f"python.version to one it admits ({hint})"
    )
    raise ProfileError(msg)


def admitted_outside(profile: SpecifierSet, needed: SpecifierSet) -> Version | None:
    """A version ``profile`` admits and ``needed`` does not, or None (as far as probing shows).

    Probed: the versions both ranges name, one up and one down at each position, and every
    TensorFlow line 2.0 ... 2.40 (.0 and .1).

    >>> str(admitted_outside(SpecifierSet("==2.16.*"), SpecifierSet("==2.14.*,>=2.14.0")))
    '2.16.0'
    >>> admitted_outside(SpecifierSet("==2.14.*"), SpecifierSet("==2.14.*,>=2.14.0")) is None
    True
    >>> str(admitted_outside(SpecifierSet(">=2.14"), SpecifierSet("==2.14.*,>=2.14.0")))
    '2.15.0'
    """
    for candidate in sorted(_probes(profile, needed)):
        if profile.contains(candidate, prereleases=False) and not needed.contains(candidate):
            return candidate
    return None


def _probes(*ranges: SpecifierSet) -> set[Version]:
    probes = {Version(f"2.{line}.{patch}") for line in _TF_LINES for patch in (0, 1)}
    for spec in (spec for specifiers in ranges for spec in specifiers):
        try:
            release = Version(spec.version.removesuffix(".*")).release
        except InvalidVersion:
            continue
        release = (*release, 0, 0)[: max(3, len(release))]
        probes.add(_version(release))
        for index, part in enumerate(release):
            for step in (-1, 1):
                if part + step >= 0:
                    probes.add(_version((*release[:index], part + step, *release[index + 1 :])))
    return probes


def _version(release: tuple[int, ...]) -> Version:
    return Version(".".join(map(str, release)))


__all__ = [
    "FACTS_FILE",
    "TffFacts",
    "TffRelease",
    "admitted_outside",
    "check_tff_profile",
    "load_facts",
]
