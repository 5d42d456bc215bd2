"""`--fix`: owner lookup with bazel query, BUILD edits, patch files, the profile's series, the loop.

The text edits and the YAML append are pure and tested on many formats; owner lookup and the
whole `invoke build-tf --fix` run on real Bazel (Debian's 4.2.3) in copied projects
(TFWHEELS_PROJECT), so the repository's own configs/ and patches/ never change.
"""

from __future__ import annotations

import ast
import difflib
import doctest
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import DATA, ROOT, FixedProject, copy_example, copy_project, invoke, requires_bazel
from tfwheels import autofix
from tfwheels.autofix import (
    BazelQuery,
    FixError,
    Owner,
    RuleNotFound,
    add_deps,
    append_patch_entry,
    build_with_fixes,
    choose_owner,
    defining_file,
    edit_build_file,
    error_excerpt,
    find_owner,
    fix_findings,
    header_location,
    next_patch_number,
    owner_query,
    parse_missing_target,
    parse_query_output,
    patch_file_name,
    query_flags,
    relative_label,
    unified_diff,
)
from tfwheels.diagnose import UndeclaredInclusion, diagnose_file
from tfwheels.errors import BuildError, UsageError
from tfwheels.layout import Layout
from tfwheels.pipeline import BuildResult
from tfwheels.plan import BuildOptions, Plan, make_plan
from tfwheels.atomic import file_sha256
from tfwheels.profiles import load_profile
from tfwheels.run import run

STRINGS_BUILD = "tensorflow/core/lib/strings/BUILD"
STR_UTIL = "//tensorflow/core/lib/strings:str_util"
TYPES = "//tensorflow/core/platform:types"


# --- BUILD file edits (pure) -------------------------------------------------------------------


def edited(text: str, deps: list[str], rule: str = "a", package: str = "pkg") -> str:
    """``add_deps`` on ``text``, checked to stay valid Starlark and to only add labels."""
    result = add_deps(text, rule, deps, package)
    ast.parse(result)  # BUILD files are a Python subset: a broken edit does not parse
    removed = [
        line for line in difflib.ndiff(text.splitlines(), result.splitlines())
        if line.startswith("- ")
    ]
    # At most one line changes in place (a comma added after the list's last label).
    assert len(removed) <= 1, removed
    return result


def test_add_deps_to_a_one_line_list() -> None:
    text = 'cc_library(\n    name = "a",\n    hdrs = ["a.h"],\n    deps = [":b"],\n)\n'
    assert edited(text, [TYPES]) == text.replace('[":b"]', f'[":b", "{TYPES}"]')


def test_add_deps_to_a_sorted_multi_line_list_keeps_its_order_and_comments() -> None:
    text = (
        "cc_library(\n"
        '    name = "a",\n'
        "    deps = [\n"
        '        ":b",\n'
        '        "//tensorflow/core/framework:tensor",\n'
        '        "@zlib//:zlib",  # compression\n'
        "    ],\n"
        ")\n"
    )
    assert edited(text, [TYPES]) == text.replace(
        '        "@zlib', f'        "{TYPES}",\n        "@zlib'
    )


def test_add_deps_appends_to_an_unsorted_list_and_adds_the_missing_comma() -> None:
    text = "cc_library(\n  name = 'a',\n  deps = [\n    '//z:z',\n    '//a:a'\n  ]\n)\n"
    assert edited(text, [TYPES]) == text.replace("'//a:a'\n", f"'//a:a',\n    '{TYPES}',\n")


def test_add_deps_inserts_a_deps_line_after_hdrs_in_the_example() -> None:
    text = (ROOT / "examples" / "tf-mini" / STRINGS_BUILD).read_text()
    result = edited(text, [TYPES], "str_util", "tensorflow/core/lib/strings")
    hdrs = '    hdrs = ["str_util.h"],\n'
    assert result == text.replace(hdrs, hdrs + f'    deps = ["{TYPES}"],\n')


def test_add_deps_follows_two_space_indentation_single_quotes_and_comments() -> None:
    text = (
        "cc_library(\n  name = 'a',\n  srcs = ['a.cc'],  # sources\n"
        "  visibility = ['//visibility:public'],\n)\n"
    )
    one = edited(text, [TYPES])
    assert one == text.replace("# sources\n", f"# sources\n  deps = ['{TYPES}'],\n")
    two = edited(text, ["//x:x", "//y:y"])
    assert "  deps = [\n    '//x:x',\n    '//y:y',\n  ],\n  visibility" in two


def test_add_deps_in_a_one_line_call_and_without_a_trailing_comma() -> None:
    assert edited('cc_library(name = "a", hdrs = ["a.h"])\n', [TYPES]) == (
        f'cc_library(name = "a", hdrs = ["a.h"], deps = ["{TYPES}"])\n'
    )
    text = 'cc_library(\n    name = "a",\n    hdrs = ["a.h"]\n)\n'
    assert edited(text, [TYPES]) == (
        f'cc_library(\n    name = "a",\n    hdrs = ["a.h"],\n    deps = ["{TYPES}"],\n)\n'
    )


def test_add_deps_to_empty_and_select_deps() -> None:
    empty = 'cc_library(\n    name = "a",\n    deps = [],\n)\n'
    assert edited(empty, [TYPES]) == empty.replace("[]", f'["{TYPES}"]')
    select = 'cc_library(\n    name = "a",\n    deps = select({\n        "//c:l": [":l"],\n    }),\n)\n'
    assert edited(select, [TYPES]) == select.replace("= select", f'= ["{TYPES}"] + select')


def test_add_deps_finds_the_rule_by_name_not_in_comments_or_strings() -> None:
    text = (
        '# cc_library(name = "a")\n'
        'genrule(\n    name = "gen",\n    cmd = "echo name = \\"a\\" > $@",\n)\n\n'
        'cc_library(\n    name = "a",  # the rule\n    hdrs = glob(["*.h"]) + [\n'
        '        "gen.h",\n    ],\n    copts = ["-DX=\\"(\\""],\n)\n'
    )
    result = edited(text, [TYPES])
    assert result == text.replace('    ],\n    copts', f'    ],\n    deps = ["{TYPES}"],\n    copts')


def test_add_deps_leaves_a_declared_dependency_alone() -> None:
    text = 'cc_library(\n    name = "a",\n    deps = [":types"],\n)\n'
    assert add_deps(text, "a", ["//tensorflow/core/platform:types"], "tensorflow/core/platform") == text
    assert add_deps(text, "a", [":types", ":types"], "x") == text


def test_a_rule_that_is_not_there_is_a_clear_error() -> None:
    with pytest.raises(RuleNotFound, match=r'no call with name = "str_util" .*add the dependency by hand'):
        add_deps('cc_library(\n    name = "other",\n)\n', "str_util", [TYPES], "p")
    twice = 'cc_library(name = "a")\ncc_binary(name = "a")\n'
    with pytest.raises(RuleNotFound, match='2 calls with name = "a"'):
        add_deps(twice, "a", [TYPES], "p")


@pytest.mark.skipif(shutil.which("buildozer") is None, reason="buildozer not on PATH (optional)")
def test_buildozer_makes_the_same_edit_as_the_text_edit(tmp_path: Path) -> None:
    buildozer = Path(shutil.which("buildozer") or "")
    build = tmp_path / STRINGS_BUILD
    build.parent.mkdir(parents=True)
    text = (ROOT / "examples" / "tf-mini" / STRINGS_BUILD).read_text()
    build.write_text(text)
    by_tool = edit_build_file(build, text, STR_UTIL, [TYPES], buildozer)
    assert by_tool == edit_build_file(build, text, STR_UTIL, [TYPES], None)
    assert build.read_text() == text  # buildozer worked on a copy
    assert edit_build_file(build, by_tool, STR_UTIL, [TYPES], buildozer) == by_tool  # its exit 3
    with pytest.raises(RuleNotFound):
        edit_build_file(build, text, "//tensorflow/core/lib/strings:nope", [TYPES], buildozer)


def test_relative_label_shortens_only_within_the_package() -> None:
    assert relative_label("//tensorflow/core/platform:types", STR_UTIL) == TYPES
    assert relative_label("//tensorflow/core/lib/strings:base", STR_UTIL) == ":base"
    assert relative_label("@zlib//:zlib", STR_UTIL) == "@zlib//:zlib"


# --- patch files (pure, and the real `patch`) -----------------------------------------------------


@pytest.mark.parametrize("before", ["a\nb\nc\n", "a\nb\nc"], ids=["newline", "no-final-newline"])
def test_unified_diff_applies_with_patch(tmp_path: Path, before: str) -> None:
    after = before.replace("b\n", "b\nnew\n").replace("c", "c2")
    diff = unified_diff("pkg/BUILD", before, after)
    assert diff.startswith("--- a/pkg/BUILD\n+++ b/pkg/BUILD\n@@ ")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "BUILD").write_text(before)
    (tmp_path / "fix.patch").write_text(diff)
    run(["patch", "-p1", "--batch", "-i", str(tmp_path / "fix.patch")], cwd=tmp_path, echo=False)
    assert (tmp_path / "pkg" / "BUILD").read_text() == after


def test_patch_names_take_the_next_number_in_the_folder(tmp_path: Path) -> None:
    assert next_patch_number(tmp_path) == 1
    for name in ("0001-a.patch", "0007-b.patch", "notes.txt", "x-0009.patch"):
        (tmp_path / name).write_text("")
    assert next_patch_number(tmp_path) == 8
    assert patch_file_name(8, STR_UTIL) == "0008-str_util.patch"
    assert patch_file_name(2, "//a:lib/b c.so") == "0002-lib-b-c.so.patch"


# --- the profile's series in YAML (pure text edit, then a real load) --------------------------------


def test_append_keeps_comments_and_formatting_and_the_profile_loads(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    path = root / "configs" / "tf" / "example.yaml"
    before = path.read_text()
    digest = "ab" * 32
    after = append_patch_entry(before, "tf/example/0002-str_util.patch", digest)
    added = [l for l in difflib.ndiff(before.splitlines(), after.splitlines()) if l[:2] in ("+ ", "- ")]
    assert added == ["+   - file: tf/example/0002-str_util.patch", f"+     sha256: {digest}"]
    last = before.splitlines().index("    sha256: " + yaml.safe_load(before)["patches"][0]["sha256"])
    assert after.splitlines()[last + 1] == "  - file: tf/example/0002-str_util.patch"
    path.write_text(after)
    (root / "patches" / "tf" / "example" / "0002-str_util.patch").write_text("x")
    profile = load_profile("example", "tensorflow", root / "configs", root)
    assert [p.file for p in profile.active_patches()][-1] == "tf/example/0002-str_util.patch"


def test_append_turns_an_inline_empty_list_into_a_block() -> None:
    text = "# mine\nextends: tf/example\npatches: []  # none yet\nwheel:\n  distribution: tensorflow\n"
    assert append_patch_entry(text, "tf/0.1.0/0001-tensor.patch", "cd" * 32, "==0.1.0") == (
        "# mine\nextends: tf/example\npatches:  # none yet\n"
        f"  - file: tf/0.1.0/0001-tensor.patch\n    sha256: {'cd' * 32}\n    versions: ==0.1.0\n"
        "wheel:\n  distribution: tensorflow\n"
    )


def test_append_adds_a_series_at_the_end_and_to_column_zero_lists() -> None:
    assert append_patch_entry("extends: tf/example", "a.patch", "ef" * 32) == (
        f"extends: tf/example\npatches:\n  - file: a.patch\n    sha256: {'ef' * 32}\n"
    )
    flush = "patches:\n- file: a.patch\n  sha256: x\n# after\nwheel: {}\n"
    assert append_patch_entry(flush, "b.patch", "1" * 64) == (
        f"patches:\n- file: a.patch\n  sha256: x\n- file: b.patch\n  sha256: \"{'1' * 64}\"\n"
        "# after\nwheel: {}\n"
    )


def test_append_refuses_a_list_it_cannot_extend_safely() -> None:
    with pytest.raises(FixError, match="non-empty inline list"):
        append_patch_entry("patches: [{file: a, sha256: b}]\n", "c", "d")


def test_the_series_goes_where_patches_is_set(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    configs = root / "configs"
    child = tmp_path / "child.yaml"
    child.write_text("extends: tf/example\ndescription: mine\n")
    assert defining_file(child, configs) == configs / "tf" / "example.yaml"
    child.write_text("extends: tf/example\npatches: []\n")
    assert defining_file(child, configs) == child


def test_doctests() -> None:
    results = doctest.testmod(autofix)
    assert results.attempted > 10 and results.failed == 0


# --- owners: query text and output (pure) -------------------------------------------------------


def test_owner_query_matches_a_label_inside_a_list_attribute() -> None:
    query = owner_query("//tensorflow/core/platform:types.h", "//tensorflow/core/platform:all")
    assert 'attr(hdrs, "[\\x5B ]//tensorflow/core/platform:types\\.h[,\\]]", ' in query
    assert query.startswith('kind("^(cc_library|objc_library|cc_import) rule$", ')


def test_parse_query_output_of_bazel_4() -> None:
    # `bazel query --output=label_kind` on Bazel 4.2.3 (stdout; progress goes to stderr).
    stdout = "cc_library rule //tensorflow/core/platform:logging\ncc_library rule //tensorflow/core/platform:other\n"
    assert parse_query_output(stdout) == [
        Owner("//tensorflow/core/platform:logging"),
        Owner("//tensorflow/core/platform:other"),
    ]
    assert parse_query_output("@zlib//:zlib\n") == [Owner("@zlib//:zlib", "rule")]
    stderr = (
        "ERROR: no such target '//tensorflow/core/platform:orphan.h': target 'orphan.h' not declared "
        "in package 'tensorflow/core/platform'; however, a source file of this name exists."
    )
    assert parse_missing_target(stderr) == "//tensorflow/core/platform:orphan.h"


def test_choose_owner_prefers_the_headers_own_package_else_reports() -> None:
    header = "//tensorflow/core/platform:types.h"
    here, there = Owner(TYPES), Owner("//tensorflow/core/lib/core:types")
    assert choose_owner([there], header) == there
    assert choose_owner([there, here], header) == here
    with pytest.raises(FixError, match="declared by several libraries .*by hand"):
        choose_owner([here, Owner("//tensorflow/core/platform:types_alias")], header)
    with pytest.raises(FixError, match="no cc_library declares"):
        choose_owner([], header)


def test_header_locations_as_bazel_lists_them() -> None:
    tree = Path("/home/ggg/000/tensorflow")
    assert header_location("/home/ggg/000/tensorflow/tensorflow/core/graph/graph.h", tree) == (
        "", "tensorflow/core/graph/graph.h"
    )
    assert header_location("external/zlib/zlib.h", tree) == ("@zlib", "zlib.h")
    assert header_location("bazel-out/darwin_arm64-opt/bin/tensorflow/core/a.pb.h", tree) == (
        "", "tensorflow/core/a.pb.h"
    )
    with pytest.raises(FixError, match="outside the source tree"):
        header_location("/opt/homebrew/include/absl/base.h", tree)


def test_error_excerpt_is_the_exact_bazel_error() -> None:
    log = (DATA / "logs" / "A05-undeclared-inclusion-tf-build-file-bug.txt").read_text().splitlines()
    rule = "//tensorflow/core/kernels:depthwise_conv_op"
    excerpt = error_excerpt(log, rule, Path("/home/ggg/000/tensorflow"))
    assert excerpt[0] == (
        f"ERROR: tensorflow/core/kernels/BUILD:712:1: undeclared inclusion(s) in rule '{rule}':"
    )
    assert excerpt[1].startswith("this rule is missing dependency declarations")
    assert excerpt[2:] == [
        "  'tensorflow/core/common_runtime/device.h'",
        "  'tensorflow/core/graph/graph.h'",
        "  'tensorflow/core/graph/edgeset.h'",
        "  'tensorflow/core/graph/types.h'.",
    ]


# --- a plan for a copied project (no Bazel needed to make one) -----------------------------------


def project_plan(root: Path, tree: Path, profile: str = "example", *, dry_run: bool = True) -> Plan:
    layout = Layout.at(root, root / "build", root / "dist")
    loaded = load_profile(profile, "tensorflow", layout.configs, layout.root)
    return make_plan(loaded, layout, tree, BuildOptions(dry_run=dry_run))


def failing(log: Path) -> Callable[[Plan], BuildResult]:
    """A stand-in for pipeline.execute: a build that fails with ``log``, whatever the plan."""

    def execute(plan: Plan) -> BuildResult:
        msg = f"bazel build failed (exit 1); full log: {log}"
        raise BuildError(msg, 1, str(log))

    return execute


def test_query_flags_are_the_builds_repository_flags(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    tree = tmp_path / "tree"
    flags = query_flags(project_plan(root, tree))
    assert flags == [
        f"--override_repository=rules_cc={tree}/third_party/rules_cc_shim",
        "--override_repository=rules_java=/usr/share/bazel/rules/java",
        "--override_repository=platforms=/usr/share/bazel/tools/platforms",
    ]


def test_toolchain_headers_get_advice_and_no_patch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = copy_project(tmp_path / "project")
    profile_file = root / "configs" / "tf" / "example.yaml"
    before = profile_file.read_text()
    log = DATA / "logs" / "A01-undeclared-inclusion-macos-sdk-libcxx.txt"
    [finding] = diagnose_file(log)
    assert isinstance(finding, UndeclaredInclusion) and finding.toolchain
    plan = project_plan(root, tmp_path / "tree")
    report = fix_findings([finding], plan, profile_file, log)
    assert report.patches == []
    [(unfixed, reason)] = report.unfixed
    assert unfixed is finding
    assert "toolchain, not a BUILD file; no patch was written" in reason
    assert "bazel clean --expunge" in reason
    with pytest.raises(BuildError, match="stopped after round 1: no patch could be written"):
        build_with_fixes(plan, failing(log), profile_ref="example", options=BuildOptions())
    printed = capsys.readouterr().err
    assert "not fixed:" in printed and "bazel clean --expunge" in printed
    assert profile_file.read_text() == before
    assert sorted(p.name for p in (root / "patches" / "tf" / "example").iterdir()) == [
        "0001-framework-tensor-depends-on-platform-logging.patch"
    ]


def test_max_rounds_bounds_the_builds(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    log = DATA / "logs" / "A05-undeclared-inclusion-tf-build-file-bug.txt"
    plan = project_plan(root, tmp_path / "tree")
    with pytest.raises(BuildError, match=r"stopped after round 1: --max-rounds 1 reached"):
        build_with_fixes(plan, failing(log), profile_ref="example", options=BuildOptions(), max_rounds=1)
    with pytest.raises(UsageError, match="at least 1"):
        build_with_fixes(plan, failing(log), profile_ref="example", options=BuildOptions(), max_rounds=0)


# --- owner lookup on real Bazel ------------------------------------------------------------------


@pytest.fixture(scope="module")
def query_tree(tmp_path_factory: pytest.TempPathFactory, bazel_trees: list[Path]) -> tuple[Path, Path]:
    """A copied project and a copy of the example tree to run `bazel query` in."""
    base = tmp_path_factory.mktemp("autofix-query")
    root = copy_project(base / "project")
    tree = copy_example("tf-mini", base / "tf")
    bazel_trees.append(tree)
    return root, tree


@pytest.mark.bazel
@requires_bazel
def test_owner_lookup_on_real_bazel(query_tree: tuple[Path, Path]) -> None:
    root, tree = query_tree
    query = BazelQuery.for_plan(project_plan(root, tree, dry_run=False))
    found = find_owner(query, "tensorflow/core/platform/types.h", STR_UTIL)
    assert (found.label, found.owner) == ("//tensorflow/core/platform:types.h", Owner(TYPES))
    assert found.queries == (owner_query(found.label, "//tensorflow/core/platform:all"),)
    # Same package, another library: hdrs tell them apart.
    logging = find_owner(query, f"{tree}/tensorflow/core/platform/logging.h", STR_UTIL)
    assert logging.owner == Owner("//tensorflow/core/platform:logging")


@pytest.mark.bazel
@requires_bazel
def test_owner_in_another_package_is_found_repository_wide(query_tree: tuple[Path, Path]) -> None:
    root, tree = query_tree
    (tree / "tensorflow/core/util").mkdir(parents=True)
    (tree / "tensorflow/core/util/BUILD").write_text('exports_files(["ext.h"])\n')
    (tree / "tensorflow/core/util/ext.h").write_text("#pragma once\n")
    (tree / "tensorflow/core/lib/ext").mkdir(parents=True)
    (tree / "tensorflow/core/lib/ext/BUILD").write_text(
        'cc_library(\n    name = "ext",\n    hdrs = ["//tensorflow/core/util:ext.h"],\n)\n'
    )
    query = BazelQuery.for_plan(project_plan(root, tree, dry_run=False))
    found = find_owner(query, "tensorflow/core/util/ext.h", STR_UTIL)
    assert found.owner == Owner("//tensorflow/core/lib/ext:ext")
    assert [q.rsplit(", ", 1)[-1] for q in found.queries] == ["//tensorflow/core/util:all))", "//...))"]


@pytest.mark.bazel
@requires_bazel
def test_a_header_no_target_declares_is_reported(query_tree: tuple[Path, Path]) -> None:
    root, tree = query_tree
    (tree / "tensorflow/core/platform/orphan.h").write_text("#pragma once\n")
    query = BazelQuery.for_plan(project_plan(root, tree, dry_run=False))
    with pytest.raises(FixError, match=r"orphan.h is declared by no target \(//tensorflow/core/platform:orphan.h"):
        find_owner(query, "tensorflow/core/platform/orphan.h", STR_UTIL)


@pytest.mark.bazel
@requires_bazel
def test_a_rule_is_patched_for_the_headers_that_have_an_owner(query_tree: tuple[Path, Path], tmp_path: Path) -> None:
    _, tree = query_tree
    root = copy_project(tmp_path / "project")
    (tree / "tensorflow/core/platform/orphan.h").write_text("#pragma once\n")
    finding = UndeclaredInclusion(
        message="2 undeclared headers", fix="", rule=STR_UTIL, source="tensorflow/core/lib/strings/str_util.cc",
        headers=("tensorflow/core/platform/types.h", "tensorflow/core/platform/orphan.h"),
        build_file=None, line=None,
    )
    log = tmp_path / "build.log"
    log.write_text("")
    report = fix_findings([finding], project_plan(root, tree, dry_run=False), root / "configs/tf/example.yaml", log)
    [written] = report.patches
    assert (written.rule, written.deps, written.headers) == (STR_UTIL, (TYPES,), ("tensorflow/core/platform/types.h",))
    assert written.entry == "tf/example/0002-str_util.patch" and written.path.is_file()
    [(unfixed, reason)] = report.unfixed
    assert unfixed is finding and "orphan.h is declared by no target" in reason


def test_each_round_gets_a_log_of_its_own(tmp_path: Path) -> None:
    plan = project_plan(copy_project(tmp_path / "project"), tmp_path / "tree")
    assert autofix._fresh_log(plan) is plan
    plan.log_path.parent.mkdir(parents=True)
    plan.log_path.write_text("the last round's errors\n")
    again = autofix._fresh_log(plan)
    assert again.log_path == plan.log_path.with_name(plan.log_path.stem + "-2.log")
    again.log_path.write_text("")
    assert autofix._fresh_log(plan).log_path.name.endswith("-3.log")


def failed_log(fixed: FixedProject) -> Path:
    """The log of the --fix run's first, failed build (real Bazel output)."""
    logs = [p for p in sorted((fixed.build / "logs").glob("tf-example-*.log")) if "undeclared" in p.read_text()]
    assert logs, fixed.result.stderr[-3000:]
    return logs[0]


@pytest.mark.bazel
@requires_bazel
def test_the_loop_stops_when_a_fixed_inclusion_comes_back(
    query_tree: tuple[Path, Path], fixed_example: FixedProject, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, tree = query_tree
    root = copy_project(tmp_path / "project")
    log = failed_log(fixed_example)  # a build that keeps failing the same way
    plan = project_plan(root, tree, dry_run=False)
    with pytest.raises(BuildError) as info:
        build_with_fixes(plan, failing(log), profile_ref="example", options=BuildOptions())
    assert "stopped after round 2: the same undeclared inclusion came back in " + STR_UTIL in str(info.value)
    assert "patch(es) it wrote stay in the profile: tf/example/0002-str_util.patch" in str(info.value)
    assert (root / "patches/tf/example/0002-str_util.patch").is_file()
    assert "round 2: building again with 2 patch(es)" in capsys.readouterr().err


# --- the whole --fix on real Bazel ---------------------------------------------------------------


@pytest.mark.bazel
@requires_bazel
def test_fix_ends_green_with_a_patch_the_profile_lists(fixed_example: FixedProject, tmp_path: Path) -> None:
    result = fixed_example.result
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fix: tensorflow/core/platform/types.h is declared by //tensorflow/core/platform:types" in result.stderr
    assert "--fix: green with 1 new patch(es): tf/example/0002-str_util.patch" in result.stderr
    patch = fixed_example.root / "patches/tf/example/0002-str_util.patch"
    text = patch.read_text()
    assert text.startswith(f"Declare the dependency of {STR_UTIL} on {TYPES}.\n")
    assert "generated by tfwheels build --fix" in text
    assert (
        "  ERROR: tensorflow/core/lib/strings/BUILD:6:11: Compiling tensorflow/core/lib/strings/"
        f"str_util.cc failed: undeclared inclusion(s) in rule '{STR_UTIL}':\n"
        "  this rule is missing dependency declarations for the following files included by "
        "'tensorflow/core/lib/strings/str_util.cc':\n"
        "    'tensorflow/core/platform/types.h'\n"
    ) in text
    assert text.endswith(
        f"--- a/{STRINGS_BUILD}\n+++ b/{STRINGS_BUILD}\n@@ -7,4 +7,5 @@\n"
        '     name = "str_util",\n     srcs = ["str_util.cc"],\n     hdrs = ["str_util.h"],\n'
        f'+    deps = ["{TYPES}"],\n )\n'
    )
    profile_yaml = (fixed_example.root / "configs/tf/example.yaml").read_text()
    shipped = (copy_project(tmp_path / "shipped") / "configs/tf/example.yaml").read_text()
    changes = [
        line for line in difflib.ndiff(shipped.splitlines(), profile_yaml.splitlines())
        if line[:2] in ("+ ", "- ")
    ]
    digest = hashlib.sha256(patch.read_bytes()).hexdigest()
    assert changes == ["+   - file: tf/example/0002-str_util.patch", f"+     sha256: {digest}"]
    assert yaml.safe_load(profile_yaml)["patches"][-1]["sha256"] == file_sha256(patch)
    # It wrote into the project TFWHEELS_PROJECT named, never the repository's own folders.
    root = fixed_example.root
    assert f"fix: wrote {root}/patches/tf/example/0002-str_util.patch (adds {TYPES} to {STR_UTIL})" in result.stderr
    assert f"and added it to {root}/configs/tf/example.yaml" in result.stderr


@pytest.mark.bazel
@requires_bazel
def test_a_later_plain_build_applies_the_fix(fixed_example: FixedProject, tmp_path: Path, bazel_trees: list[Path]) -> None:
    assert fixed_example.result.returncode == 0, fixed_example.result.stderr[-3000:]
    tree = copy_example("tf-mini", tmp_path / "tf")
    bazel_trees.append(tree)
    env = fixed_example.env(TFWHEELS_BUILD=str(tmp_path / "build"), TFWHEELS_DIST=str(tmp_path / "dist"))
    result = invoke("build-tf", "--profile", "example", "--source", str(tree), "--json", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["ok"] is True
    state = json.loads((tree / ".tfwheels/state.json").read_text())
    assert [p["file"] for p in state["applied"]] == [
        "tf/example/0001-framework-tensor-depends-on-platform-logging.patch",
        "tf/example/0002-str_util.patch",
    ]
    assert f'    deps = ["{TYPES}"],\n' in (tree / STRINGS_BUILD).read_text()
    assert [w.name.split("-")[0] for w in (tmp_path / "dist").glob("*.whl")] == ["tensorflow"]


@pytest.mark.bazel
@requires_bazel
def test_fix_patches_two_rules_in_one_round_into_an_empty_series(tmp_path: Path, bazel_trees: list[Path]) -> None:
    root = copy_project(tmp_path / "project")
    example = load_profile("example", "tensorflow", root / "configs", root)
    unpatched = tmp_path / "unpatched.yaml"
    # --keep_going: Bazel reports both undeclared inclusions of the unpatched example at once.
    flags = "".join(f"    - {flag}\n" for flag in [*example.bazel.build_flags, "--keep_going"])
    unpatched.write_text(f"# no patches yet\nextends: tf/example\npatches: []\nbazel:\n  build_flags:\n{flags}")
    tree = copy_example("tf-mini", tmp_path / "tf")
    bazel_trees.append(tree)
    env = {"TFWHEELS_PROJECT": str(root), "TFWHEELS_BUILD": str(tmp_path / "build"),
           "TFWHEELS_DIST": str(tmp_path / "dist")}
    result = invoke("build-tf", "--profile", str(unpatched), "--source", str(tree), "--fix", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--fix: round 2: building again with 2 patch(es)" in result.stderr
    written = sorted(p.name for p in (root / "patches/tf/0.1.0").iterdir())
    assert written == ["0001-str_util.patch", "0002-tensor.patch"] or written == [
        "0001-tensor.patch", "0002-str_util.patch"
    ]
    text = unpatched.read_text()
    assert text.startswith("# no patches yet\nextends: tf/example\npatches:\n  - file: tf/0.1.0/0001-")
    assert "\n    versions" not in text  # the series is the profile's own: no version pin needed
    series = yaml.safe_load(text)["patches"]
    assert [e["sha256"] for e in series] == [file_sha256(root / "patches" / e["file"]) for e in series]
    tensor = (root / "patches/tf/0.1.0" / next(n for n in written if "tensor" in n)).read_text()
    assert '+    deps = ["//tensorflow/core/platform:logging"],\n' in tensor


@pytest.mark.bazel
@requires_bazel
def test_fix_stops_and_explains_when_no_patch_can_be_written(tmp_path: Path, bazel_trees: list[Path]) -> None:
    root = copy_project(tmp_path / "project")
    before = (root / "configs/tf/example.yaml").read_text()
    tree = copy_example("tf-mini", tmp_path / "tf")
    bazel_trees.append(tree)
    platform = tree / "tensorflow/core/platform/BUILD"
    platform.write_text(platform.read_text().replace('    hdrs = ["types.h"],\n', ""))
    env = {"TFWHEELS_PROJECT": str(root), "TFWHEELS_BUILD": str(tmp_path / "build"),
           "TFWHEELS_DIST": str(tmp_path / "dist")}
    result = invoke("build-tf", "--profile", "example", "--source", str(tree), "--fix", env=env)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "error: --fix stopped after round 1: no patch could be written for this failure" in result.stderr
    assert "not fixed: tensorflow/core/platform/types.h is declared by no target" in result.stderr
    assert (root / "configs/tf/example.yaml").read_text() == before
    assert not (root / "patches/tf/example/0002-str_util.patch").exists()
