"""The Bazel log diagnoser on real logs: public bug reports, a log captured from Bazel 4.2.3, and
hostile input that must stay bounded in time and memory."""

from __future__ import annotations

import doctest
import io
import json
import random
import shutil
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import DATA, requires_bazel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfwheels import diagnose
from tfwheels.diagnose import (
    BazelVersion,
    FetchFailure,
    Finding,
    HostResources,
    IncompatibleArchitecture,
    OutOfMemory,
    UndeclaredInclusion,
    XcodeToolchain,
    clean_line,
    diagnose_command,
    diagnose_file,
    diagnose_lines,
    diagnose_stream,
)
from tfwheels.errors import UsageError

LOGS = DATA / "logs"
CAPTURED = DATA / "captured" / "bazel-4.2.3-undeclared-inclusion.log"
HOST = HostResources(cores=8, total_ram_mb=16384)

# The fixture letter (and for H the label) names the kind a reader must conclude.
KIND_BY_LETTER = {
    "A": "undeclared-inclusion",
    "B": "incompatible-architecture",
    "C": "bazel-version",
    "D": "out-of-memory",
    "E": "xcode-toolchain",
    "F": "python-environment",
    "G": "fetch-failure",
}
KIND_BY_H_LABEL = {
    "layering-check": "layering-check",
    "toolchain": "missing-toolchain",
    "protobuf-version": "protobuf-version-skew",
}


@dataclass(frozen=True)
class Fixture:
    """One public bug-report log: its header and the log text after ``---``."""

    path: Path
    source: str
    letter: str
    label: str
    expected_diagnosis: str
    body: bytes

    @property
    def kind(self) -> str:
        return KIND_BY_LETTER.get(self.letter) or KIND_BY_H_LABEL[self.label]


def load_fixture(path: Path) -> Fixture:
    """Split a fixture into its ``source:``/``kind:``/``expected-diagnosis:`` header and its log."""
    head, _, body = path.read_bytes().partition(b"\n---\n")
    header = dict(line.split(": ", 1) for line in head.decode().splitlines())
    letter, label = header["kind"].split(" ")[:2]
    return Fixture(path, header["source"], letter, label, header["expected-diagnosis"], body)


FIXTURES = [load_fixture(path) for path in sorted(LOGS.glob("*.txt"))]


def by_name(prefix: str) -> Fixture:
    return next(f for f in FIXTURES if f.path.name.startswith(prefix))


def from_bytes(data: bytes) -> list[Finding]:
    return diagnose_stream(io.BytesIO(data), host=HOST)


def from_text(data: bytes) -> list[Finding]:
    """The text path on the lines of ``data`` (split as a file is: a final newline ends a line)."""
    lines = data.decode("utf-8", "replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    return diagnose_lines(lines, host=HOST)


def as_json(findings: list[Finding]) -> list[dict[str, object]]:
    return [finding.to_json() for finding in findings]


# -- every real log -----------------------------------------------------------------------------


def test_fixtures_are_all_there() -> None:
    assert len(FIXTURES) >= 29
    assert {f.letter for f in FIXTURES} == set("ABCDEFGH")


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.path.stem)
def test_each_log_gets_its_kind(fixture: Fixture) -> None:
    findings = from_bytes(fixture.body)
    assert findings, f"nothing found; expected {fixture.kind}: {fixture.expected_diagnosis}"
    assert findings[0].kind == fixture.kind
    assert {f.kind for f in findings} == {fixture.kind}, as_json(findings)
    assert all(f.fix and f.message for f in findings)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.path.stem)
def test_text_and_stream_paths_agree(fixture: Fixture) -> None:
    assert as_json(from_text(fixture.body)) == as_json(from_bytes(fixture.body))


UNDECLARED = {
    "A01": (
        "//:hello",
        "hello.cpp",
        "/private/tmp/test-me/BUILD",
        1,
        True,
        [
            "/Library/Developer/CommandLineTools/SDKs/MacOSX.sdk/usr/include/c++/v1/iostream",
            "/Library/Developer/CommandLineTools/SDKs/MacOSX.sdk/usr/include/c++/v1/__config",
            "/Library/Developer/CommandLineTools/SDKs/MacOSX.sdk/usr/include/c++/v1/__config_site",
            "/Library/Developer/CommandLineTools/SDKs/MacOSX.sdk/usr/include/pthread.h",
            "/Library/Developer/CommandLineTools/SDKs/MacOSX.sdk/usr/include/c++/v1/ios",
            "/Library/Developer/CommandLineTools/SDKs/MacOSX.sdk/usr/include/c++/v1/__locale",
            "/Library/Developer/CommandLineTools/SDKs/MacOSX.sdk/usr/include/c++/v1/__availability",
            "/Library/Developer/CommandLineTools/SDKs/MacOSX.sdk/usr/include/c++/v1/string",
            "/Library/Developer/CommandLineTools/SDKs/MacOSX.sdk/usr/include/c++/v1/__debug",
        ],
    ),
    "A02": (
        "@com_google_protobuf//:protobuf",
        "external/com_google_protobuf/src/google/protobuf/stubs/mathlimits.cc",
        "/private/var/tmp/_bazel_me/57d181a2c7179aa428276012ffbf756a/external/com_google_protobuf/BUILD",
        135,
        True,
        [
            "/Library/Developer/CommandLineTools/usr/lib/clang/10.0.0/include/stddef.h",
            "/Library/Developer/CommandLineTools/usr/lib/clang/10.0.0/include/__stddef_max_align_t.h",
            "/Library/Developer/CommandLineTools/usr/lib/clang/10.0.0/include/float.h",
            "/Library/Developer/CommandLineTools/usr/lib/clang/10.0.0/include/stdint.h",
            "/Library/Developer/CommandLineTools/usr/lib/clang/10.0.0/include/stdarg.h",
            "/Library/Developer/CommandLineTools/usr/lib/clang/10.0.0/include/limits.h",
        ],
    ),
    "A04": (
        "@utf_archive//:utf",
        "external/utf_archive/libutf/runestrncmp.c",
        "/private/var/tmp/_bazel_user/f8a4e05608f194d30caf1f6a29617bdb/external/utf_archive/BUILD.bazel",
        1,
        True,
        [
            (
                "/Applications/Xcode.app/Contents/Developer/Toolchains/XcodeDefault.xctoolchain/"
                "usr/lib/clang/8.0.0/include/stdarg.h"
            )
        ],
    ),
    "A05": (
        "//tensorflow/core/kernels:depthwise_conv_op",
        "tensorflow/core/kernels/depthwise_conv_op.cc",
        "/home/ggg/000/tensorflow/tensorflow/core/kernels/BUILD",
        712,
        False,
        [
            "/home/ggg/000/tensorflow/tensorflow/core/common_runtime/device.h",
            "/home/ggg/000/tensorflow/tensorflow/core/graph/graph.h",
            "/home/ggg/000/tensorflow/tensorflow/core/graph/edgeset.h",
            "/home/ggg/000/tensorflow/tensorflow/core/graph/types.h",
        ],
    ),
    "A07": (
        "@llvm-project//llvm:count",
        "external/llvm-project/llvm/utils/count/count.c",
        "/ws/2cca323f33485b8e970325d856ce9b72/external/llvm-project/llvm/BUILD",
        665,
        True,
        ["/usr/lib64/clang/10.0.0/include/stddef.h", "/usr/lib64/clang/10.0.0/include/stdarg.h"],
    ),
    "A09": (
        "//tensorflow/core/kernels:nccl_kernels",
        "tensorflow/core/kernels/nccl_ops.cc",
        None,
        None,
        False,
        ["third_party/nccl/nccl.h"],
    ),
}


def test_every_undeclared_inclusion_log_has_expectations() -> None:
    assert {f.path.name[:3] for f in FIXTURES if f.letter == "A"} == set(UNDECLARED)


@pytest.mark.parametrize("name", sorted(UNDECLARED))
def test_undeclared_inclusion_rule_and_headers(name: str) -> None:
    rule, source, build_file, line, toolchain, headers = UNDECLARED[name]
    [finding] = from_bytes(by_name(name).body)
    assert isinstance(finding, UndeclaredInclusion)
    assert (finding.rule, finding.source, finding.build_file, finding.line) == (
        rule,
        source,
        build_file,
        line,
    )
    assert list(finding.headers) == headers
    assert finding.toolchain is toolchain
    if toolchain:
        assert "bazel clean --expunge" in finding.fix and "Do not patch BUILD" in finding.fix
    else:
        assert "invoke build-tf --fix" in finding.fix


def test_nccl_header_suggests_nonccl() -> None:
    [finding] = from_bytes(by_name("A09").body)
    assert "--config=nonccl" in finding.fix
    assert finding.location == "tensorflow/core/kernels/nccl_ops.cc"


def test_undeclared_json_contract() -> None:
    [finding] = from_bytes(by_name("A05").body)
    assert isinstance(finding, UndeclaredInclusion)
    data = finding.to_json()
    assert list(data)[:4] == ["kind", "message", "fix", "location"]
    assert data["kind"] == "undeclared-inclusion"
    assert data["location"] == "/home/ggg/000/tensorflow/tensorflow/core/kernels/BUILD:712:1"
    assert data["headers"] == list(finding.headers)
    assert {"rule", "source", "headers", "build_file", "line", "toolchain", "count"} <= set(data)
    json.dumps(data)


# -- the traps named in tests/data/README.md ------------------------------------------------------


def test_recovered_version_warning_is_marked_recovered() -> None:
    [finding] = from_bytes(by_name("C04").body)
    assert isinstance(finding, BazelVersion)
    assert (finding.required, finding.found, finding.recovered) == ("5.1.0", "5.0.0", True)
    assert "USE_BAZEL_VERSION=5.1.0" in finding.fix


def test_recovered_findings_come_after_real_ones() -> None:
    oom = b"gcc: internal compiler error: Killed (program cc1plus)\n"
    findings = from_bytes(by_name("C04").body + b"\n" + oom)
    assert [f.kind for f in findings] == ["out-of-memory", "bazel-version"]


def test_mirror_404_is_not_the_failure() -> None:
    [finding] = from_bytes(by_name("G01").body)
    assert isinstance(finding, FetchFailure)
    assert finding.repository == "org_tensorflow"
    assert finding.url and finding.url.startswith("https://github.com/")
    assert "reconnect" in (finding.reason or "")


MIRROR_404 = (
    "INFO: Repository org_tensorflow instantiated at:\n"
    "WARNING: Download from https://mirror.bazel.build/github.com/tensorflow/tensorflow/archive/"
    "7c09d15f.tar.gz failed: class com.google.devtools.build.lib.bazel.repository.downloader."
    "UnrecoverableHttpException GET returned 404 Not Found\n"
    "INFO: Analyzed target //tensorflow/tools/pip_package:build_pip_package.\n"
    "INFO: Build completed successfully, 12 total actions\n"
)


def test_log_with_only_mirror_404_warnings_has_no_fetch_failure() -> None:
    assert from_bytes(MIRROR_404.encode()) == []


def test_repository_error_explained_by_python_is_not_a_fetch_failure() -> None:
    findings = from_bytes(MIRROR_404.encode() + by_name("F05").body)
    assert [f.kind for f in findings] == ["python-environment"]


def test_download_evidence_belongs_to_the_repository_after_it() -> None:
    findings = from_bytes(by_name("F01").body + b"\n" + by_name("G01").body)
    assert [(f.kind, getattr(f, "repository", None)) for f in findings] == [
        ("python-environment", None),
        ("fetch-failure", "org_tensorflow"),
    ]


def test_error_downloading_is_a_fetch_failure() -> None:
    log = (
        "ERROR: An error occurred during the fetch of repository 'llvm-raw':\n"
        "Error in download_and_extract: java.io.IOException: Error downloading "
        "[https://github.com/llvm/llvm-project/archive/abc.tar.gz] to /o/external/llvm-raw/"
        "temp1/abc.tar.gz: Checksum was 1111 but wanted 2222\n"
    )
    [finding] = from_bytes(log.encode())
    assert isinstance(finding, FetchFailure)
    assert finding.repository == "llvm-raw"
    assert finding.url == "https://github.com/llvm/llvm-project/archive/abc.tar.gz"
    assert "--distdir" in finding.fix


MISSING_FRAMEWORK = (
    "ERROR: /ws/tensorflow/BUILD:1200:21: Linking tensorflow/libtensorflow_framework.2.16.0.dylib "
    "failed: (Exit 1): cc_wrapper.sh failed: error executing command\n"
    "Undefined symbols for architecture arm64:\n"
    '  "_CFRelease", referenced from:\n'
    "      tsl::port::NominalCPUFrequency() in cpu_info.o\n"
    '  "_kCFAllocatorDefault", referenced from:\n'
    "      tsl::port::NominalCPUFrequency() in cpu_info.o\n"
    "ld: symbol(s) not found for architecture arm64\n"
    "clang: error: linker command failed with exit code 1 (use -v to see invocation)\n"
)


def test_link_error_that_is_a_missing_framework_not_an_architecture() -> None:
    findings = from_bytes(MISSING_FRAMEWORK.encode())
    assert [f.kind for f in findings] == ["xcode-toolchain"]
    [finding] = findings
    assert isinstance(finding, XcodeToolchain)
    assert (finding.problem, finding.detail) == ("undefined-symbols", "CoreFoundation")
    assert finding.symbols == ("_CFRelease", "_kCFAllocatorDefault")
    assert "-framework CoreFoundation" in finding.fix


def test_link_error_after_skipping_a_wrong_arch_file_is_architecture() -> None:
    [finding] = from_bytes(by_name("B04").body)
    assert isinstance(finding, IncompatibleArchitecture)
    assert (finding.file, finding.have, finding.need) == (
        "/usr/local/lib/libtensorflow.so",
        "arm64",
        "x86_64",
    )


def test_linker_warning_alone_is_not_a_failure() -> None:
    log = (
        "ld: warning: ignoring file /opt/lib/libfoo.a, building for macOS-arm64 but attempting to "
        "link with file built for macOS-x86_64\n"
        "INFO: Build completed successfully, 3 total actions\n"
    )
    assert from_bytes(log.encode()) == []


# -- kind-specific fields -----------------------------------------------------------------------


def test_incompatible_architecture_fields() -> None:
    [finding] = from_bytes(by_name("B01").body)
    assert finding.to_json()["have"] == "x86_64"
    assert finding.to_json()["need"] == "arm64e"
    assert str(finding.to_json()["file"]).endswith("_pywrap_tensorflow.so")
    assert "Rosetta" in finding.fix


def test_bazel_version_configure_min_and_max() -> None:
    findings = from_bytes(by_name("C01").body)
    assert [(f.to_json()["required"], f.to_json()["found"]) for f in findings] == [
        (">=0.24.1", "0.23.0"),
        ("<=0.26.1", "0.29.1"),
    ]


def test_bazel_version_check_bzl() -> None:
    [finding] = from_bytes(by_name("C02").body)
    assert (finding.to_json()["required"], finding.to_json()["found"]) == (">=3.7.2", "3.4.1")
    assert "bazelisk" in finding.fix


def test_debian_wrapper_message() -> None:
    line = (
        "ERROR: The project you're trying to build requires Bazel 4.2.3 (specified in "
        "/ws/.bazelversion), but it wasn't found in /usr/bin."
    )
    [finding] = from_bytes(line.encode())
    assert (finding.to_json()["required"], finding.to_json()["found"]) == ("4.2.3", None)


def test_bazelisk_cannot_get_the_pinned_version() -> None:
    line = (
        "2024/01/02 03:04:05 could not download Bazel: failed to download bazel: HTTP GET "
        "https://releases.bazel.build/6.9.9/release/bazel-6.9.9-linux-x86_64 failed with error 404"
    )
    [finding] = from_bytes(line.encode())
    assert isinstance(finding, BazelVersion)
    assert (finding.cause, finding.required, finding.found) == ("bazelisk", "6.9.9", None)


def test_out_of_memory_suggestions_follow_the_host_rule() -> None:
    small = HostResources(cores=8, total_ram_mb=8192)
    big = HostResources(cores=4, total_ram_mb=65536)
    tiny = HostResources(cores=2, total_ram_mb=2048)
    # below what builds pass by default (tfwheels.hostinfo.resources): half the jobs, 3/4 the RAM
    assert (small.jobs, small.local_ram_resources) == (2, 3072)
    assert (big.jobs, big.local_ram_resources) == (2, 24576)
    assert tiny.jobs == 1
    [finding] = from_bytes(by_name("D01").body)
    assert isinstance(finding, OutOfMemory)
    assert (finding.jobs, finding.local_ram_resources) == (HOST.jobs, HOST.local_ram_resources)
    assert f"--jobs={HOST.jobs} --local_ram_resources={HOST.local_ram_resources}" in finding.fix


def test_out_of_memory_defaults_to_this_host() -> None:
    body = by_name("D04").body
    [finding] = diagnose_stream(io.BytesIO(body))
    here = HostResources.detect()
    assert (finding.to_json()["jobs"], finding.to_json()["local_ram_resources"]) == (
        here.jobs,
        here.local_ram_resources,
    )


def test_java_heap_out_of_memory_suggests_a_heap() -> None:
    log = b"FATAL: bazel ran out of memory and crashed. Printing stack trace:\n"
    log += b"java.lang.OutOfMemoryError: Java heap space\n"
    [finding] = from_bytes(log)
    assert finding.to_json()["host_jvm_args"] == f"-Xmx{HOST.jvm_heap_mb}m"
    assert finding.count == 2


# -- line prefixes, labels, dedup -----------------------------------------------------------------

A01_LINES = by_name("A01").body.decode().split("\n")

PREFIXES = {
    "github-actions": "2024-03-05T10:11:12.1234567Z ",
    "iso-millis": "2023-01-02T03:04:05.123Z ",
    "bracket-clock": "[12:34:56] ",
    "bazel-show-timestamps": "(12:34:56) ",
    "log-viewer-gutter": "  | ",
    "numbered-gutter": "  42 | ",
    "jenkins": "[2023-01-02T03:04:05.123Z] ",
    "go-log": "2024/01/02 03:04:05 ",
    "ansi": "\x1b[0m\x1b[31m",
    "stacked": "2024-03-05T10:11:12.1234567Z   | [12:34:56] \x1b[1m",
}


@pytest.mark.parametrize("prefix", PREFIXES.values(), ids=PREFIXES.keys())
def test_line_prefixes_do_not_change_the_diagnosis(prefix: str) -> None:
    plain = from_text("\n".join(A01_LINES).encode())
    prefixed = "\n".join(prefix + line for line in A01_LINES).encode()
    assert as_json(from_bytes(prefixed)) == as_json(plain)
    assert as_json(from_text(prefixed)) == as_json(plain)


def test_ansi_escapes_inside_a_line() -> None:
    line = "\x1b[31m\x1b[1mERROR: \x1b[0m/ws/BUILD:3:1: undeclared inclusion(s) in rule '//a:b':"
    assert clean_line(line) == "ERROR: /ws/BUILD:3:1: undeclared inclusion(s) in rule '//a:b':"


def test_windows_line_endings() -> None:
    body = by_name("A05").body.replace(b"\n", b"\r\n")
    assert as_json(from_bytes(body)) == as_json(from_bytes(by_name("A05").body))


def test_bzlmod_canonical_labels() -> None:
    log = (
        "ERROR: /o/external/grpc+/src/core/BUILD.bazel:1234:16: Compiling src/core/lib/a.cc "
        "[for tool] failed: undeclared inclusion(s) in rule '@@grpc+//src/core:grpc_base':\n"
        "this rule is missing dependency declarations for the following files included by "
        "'external/grpc+/src/core/lib/a.cc':\n"
        "  'external/abseil-cpp+/absl/base/config.h'\n"
        "INFO: Elapsed time: 1.0s\n"
    )
    [finding] = from_bytes(log.encode())
    assert isinstance(finding, UndeclaredInclusion)
    assert finding.rule == "@@grpc+//src/core:grpc_base"
    assert finding.source == "external/grpc+/src/core/lib/a.cc"
    assert finding.headers == ("external/abseil-cpp+/absl/base/config.h",)
    assert (finding.line, finding.column) == (1234, 16)


def test_same_failure_is_reported_once_with_a_count() -> None:
    body = by_name("A01").body
    findings = from_bytes(body + b"\nINFO: retrying\n" + body)
    assert len(findings) == 1 and findings[0].count == 2
    [march] = from_bytes(by_name("E05").body)
    assert march.count == 6
    [sdk] = from_bytes(by_name("E03").body)
    assert (sdk.to_json()["detail"], sdk.count) == ("macosx10.11", 5)


def test_different_failures_are_kept_apart_in_log_order() -> None:
    body = by_name("A05").body + b"\n" + by_name("D03").body + b"\n" + by_name("A01").body
    assert [f.kind for f in from_bytes(body)] == [
        "undeclared-inclusion",
        "out-of-memory",
        "undeclared-inclusion",
    ]


# -- the log captured from Debian's Bazel 4.2.3 ---------------------------------------------------


def _check_captured(findings: list[Finding], build_file: str) -> None:
    [finding] = findings
    assert isinstance(finding, UndeclaredInclusion)
    assert finding.rule == "//tensorflow/tools/hello:hello"
    assert finding.source == "tensorflow/tools/hello/hello.cc"
    assert finding.headers == (
        "tensorflow/core/platform/logging.h",
        "tensorflow/core/platform/macros.h",
    )
    assert (finding.build_file, finding.line, finding.column) == (build_file, 3, 10)
    assert finding.toolchain is False


def test_captured_bazel_4_2_3_log() -> None:
    assert CAPTURED.read_text().startswith("source: captured from Debian bazel-bootstrap 4.2.3")
    findings = diagnose_file(CAPTURED, host=HOST)
    _check_captured(findings, "/tmp/tfw-capture/tensorflow/tensorflow/tools/hello/BUILD")


def test_captured_log_relative_to_source(tmp_path: Path) -> None:
    source = tmp_path / "tensorflow"
    source.mkdir()
    text = CAPTURED.read_text().replace("/tmp/tfw-capture/tensorflow", str(source))
    log = tmp_path / "build.log"
    log.write_text(text)
    [finding] = diagnose_file(log, source=source, host=HOST)
    assert finding.location == "tensorflow/tools/hello/BUILD:3:10"
    assert finding.to_json()["build_file"] == "tensorflow/tools/hello/BUILD"


SHIM_DEFS = "\n".join(
    f"{name} = native.{name}"
    for name in (
        "cc_binary",
        "cc_library",
        "cc_toolchain",
        "cc_toolchain_suite",
        "cc_test",
        "cc_import",
        "cc_proto_library",
        "fdo_profile",
        "fdo_prefetch_hints",
        "objc_library",
        "objc_import",
    )
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _undeclared_workspace(root: Path) -> tuple[Path, Path]:
    """A workspace whose cc_binary includes another package's header without a dep."""
    shim = root / "shim"
    _write(shim / "WORKSPACE", 'workspace(name = "rules_cc")\n')
    _write(shim / "BUILD", "")
    _write(shim / "cc" / "BUILD", "")
    _write(shim / "cc" / "defs.bzl", SHIM_DEFS + "\n")
    tree = root / "tensorflow"
    _write(tree / "WORKSPACE", 'workspace(name = "org_tensorflow")\n')
    platform = tree / "tensorflow" / "core" / "platform"
    _write(
        platform / "BUILD",
        'cc_library(name = "logging", hdrs = ["logging.h", "macros.h"], '
        'visibility = ["//visibility:public"])\n',
    )
    _write(platform / "logging.h", '#include "tensorflow/core/platform/macros.h"\n')
    _write(platform / "macros.h", "#define TF_EXPORT\n")
    hello = tree / "tensorflow" / "tools" / "hello"
    _write(
        hello / "BUILD",
        'load("@rules_cc//cc:defs.bzl", "cc_binary")\n\n'
        'cc_binary(\n    name = "hello",\n    srcs = ["hello.cc"],\n)\n',
    )
    _write(
        hello / "hello.cc",
        '#include "tensorflow/core/platform/logging.h"\nint main() { return 0; }\n',
    )
    return tree, shim


@pytest.mark.bazel
@requires_bazel
def test_live_bazel_undeclared_inclusion(tmp_path: Path) -> None:
    tree, shim = _undeclared_workspace(tmp_path)
    bazel = shutil.which("bazel") or "bazel"
    startup = [bazel, f"--output_user_root={tmp_path / 'out'}"]
    build = [
        "build",
        "--nosandbox_debug",
        "--spawn_strategy=standalone",
        f"--override_repository=rules_cc={shim}",
        "--override_repository=rules_java=/usr/share/bazel/rules/java",
        "--override_repository=platforms=/usr/share/bazel/tools/platforms",
        "//tensorflow/tools/hello:hello",
    ]
    try:
        result = subprocess.run(
            [*startup, *build], cwd=tree, capture_output=True, text=True, timeout=900, check=False
        )
    finally:
        subprocess.run(
            [*startup, "shutdown"], cwd=tree, capture_output=True, timeout=120, check=False
        )
    assert result.returncode == 1, result.stderr
    findings = diagnose_lines(result.stderr.splitlines(), host=HOST)
    _check_captured(findings, str(tree / "tensorflow" / "tools" / "hello" / "BUILD"))


# -- hostile input ----------------------------------------------------------------------------


def _peak_bytes(data_stream: io.BufferedIOBase) -> tuple[list[Finding], int]:
    tracemalloc.start()
    try:
        findings = diagnose_stream(data_stream, host=HOST)
        return findings, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class _Repeat(io.RawIOBase):
    """A stream of ``size`` bytes made of ``pattern``, then ``tail``, never held in memory."""

    def __init__(self, pattern: bytes, size: int, tail: bytes = b"") -> None:
        self._pattern, self._left, self._tail = pattern, size, tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            n = min(len(buffer), len(self._tail))
            buffer[:n], self._tail = self._tail[:n], self._tail[n:]
            return n
        n = min(len(buffer), self._left)
        reps = self._pattern * (n // len(self._pattern) + 1)
        buffer[:n] = reps[:n]
        self._left -= n
        return n


A01_BODY = by_name("A01").body


def test_fifty_megabytes_without_a_newline_stay_bounded() -> None:
    stream = io.BufferedReader(_Repeat(b"ERROR undeclared Killed \x00\xff", 50 * 1024 * 1024))
    findings, peak = _peak_bytes(stream)
    assert findings == []
    assert peak < 16 * 1024 * 1024


def test_failure_after_a_giant_line_is_still_found() -> None:
    stream = io.BufferedReader(_Repeat(b"x" * 1000, 50 * 1024 * 1024, b"\n" + A01_BODY))
    findings, peak = _peak_bytes(stream)
    assert [f.kind for f in findings] == ["undeclared-inclusion"]
    assert len(findings[0].to_json()["headers"]) == 9  # type: ignore[arg-type]
    assert peak < 16 * 1024 * 1024


def test_binary_garbage_and_invalid_utf8() -> None:
    rng = random.Random(1234)
    garbage = bytes(rng.getrandbits(8) for _ in range(2 * 1024 * 1024))
    bad_utf8 = b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x90\x28\xbc ERROR: \xff\xfe caf\xe9\n" * 1000
    log = garbage + b"\n" + bad_utf8 + A01_BODY + b"\n" + garbage
    findings = from_bytes(log)
    assert [f.kind for f in findings] == ["undeclared-inclusion"]
    assert as_json(from_text(log)) == as_json(findings)


def test_pathological_long_lines_stay_fast() -> None:
    cap = diagnose.MAX_LINE_BYTES
    lines = [
        "ERROR: " + "a" * cap + " Killed",
        "ERROR: " + " " * cap + "x",
        "ERROR " + "Compiling " * (cap // 10),
        "ERROR: " * (cap // 7),
        "rror " + "x.pb.h:1:1: " * (cap // 12),
        "rror " + ("a" * 60 + ": error: unable to execute command: Kil") * (cap // 100),
        "Killed " + "\t" * cap,
        "ERROR: " + "'" * cap,
    ]
    started = time.monotonic()
    for line in lines:
        diagnose_lines([line] * 3, host=HOST)
    assert time.monotonic() - started < 10


def test_needle_past_the_line_cap_is_ignored_on_both_paths() -> None:
    cap = diagnose.MAX_LINE_BYTES
    long_line = b"x" * (cap + 10) + b" gcc: internal compiler error: Killed (program cc1plus)"
    assert from_bytes(long_line + b"\n") == [] == from_text(long_line)
    short = b"gcc: internal compiler error: Killed (program cc1plus)" + b"x" * (cap * 2)
    assert [f.kind for f in from_bytes(short)] == ["out-of-memory"]
    assert as_json(from_text(short)) == as_json(from_bytes(short))


def _has_needle(line: str) -> bool:
    return any(needle.decode() in line for needle in diagnose.NEEDLES)


FIXTURE_LINES = [
    line
    for fixture in FIXTURES
    for line in fixture.body.decode("utf-8", "replace").split("\n")
    if line.isascii()
]
NOISE = [line for line in FIXTURE_LINES if not _has_needle(line)] + ["", "x" * 70, "  'a.h'"]
SIGNAL = [line for line in FIXTURE_LINES if _has_needle(line)] + ["ERROR" + "y" * 70]


def _fed(monkeypatch: pytest.MonkeyPatch, run: Callable[[], list[Finding]]) -> tuple[object, ...]:
    """What the diagnosis was fed (line, follows) by one path, and what it found."""
    seen: list[tuple[str, bool]] = []
    original = diagnose._Diagnosis.feed

    def spy(self: diagnose._Diagnosis, line: str, follows: bool) -> None:
        seen.append((line, follows))
        original(self, line, follows)

    with monkeypatch.context() as patch:
        patch.setattr(diagnose._Diagnosis, "feed", spy)
        findings = run()
    return seen, as_json(findings)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lines=st.lists(st.one_of(*[st.sampled_from(NOISE)] * 4, st.sampled_from(SIGNAL)), max_size=120),
    chunk=st.integers(min_value=1, max_value=400),
    cap=st.integers(min_value=8, max_value=200),
    context=st.integers(min_value=0, max_value=4),
)
def test_stream_and_text_paths_feed_the_same_lines(
    monkeypatch: pytest.MonkeyPatch, lines: list[str], chunk: int, cap: int, context: int
) -> None:
    """The prefilter rule is one rule: both paths feed the same lines, flagged the same way."""
    data = "\n".join(lines).encode()
    with monkeypatch.context() as patch:
        patch.setattr(diagnose, "CHUNK_BYTES", chunk)
        patch.setattr(diagnose, "MAX_LINE_BYTES", cap)
        patch.setattr(diagnose, "CONTEXT_LINES", context)
        assert _fed(patch, lambda: from_bytes(data)) == _fed(patch, lambda: from_text(data))


# -- diagnose_command -------------------------------------------------------------------------


def test_command_missing_log_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        diagnose_command(str(tmp_path / "nope.log"), False, None, tmp_path / "logs")
    message = str(caught.value)
    assert "nope.log" in message and "\n" not in message


def test_command_without_any_build_log(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="latest.log.*invoke build-tf"):
        diagnose_command(None, False, None, tmp_path / "logs")


def test_command_reads_latest_log_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "20240101-tf.log").write_bytes(by_name("D01").body)
    (logs / "latest.log").symlink_to("20240101-tf.log")
    assert diagnose_command(None, True, None, logs) == 1
    payload = json.loads(capsys.readouterr().out)
    [finding] = payload["findings"]
    assert finding["kind"] == "out-of-memory"
    assert {"message", "fix", "location", "jobs", "local_ram_resources"} <= set(finding)


def test_command_human_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "a05.log"
    log.write_bytes(by_name("A05").body)
    source = tmp_path / "src"
    source.mkdir()
    assert diagnose_command(str(log), False, None, tmp_path) == 1
    text = capsys.readouterr().out
    assert "1 problem found" in text and "undeclared-inclusion" in text
    assert "/home/ggg/000/tensorflow/tensorflow/core/graph/graph.h" in text
    assert "fix:" in text and "invoke build-tf --fix" in text


def test_command_nothing_recognised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "ok.log"
    log.write_text(MIRROR_404)
    assert diagnose_command(str(log), False, None, tmp_path) == 0
    assert "nothing recognised" in capsys.readouterr().out
    assert diagnose_command(str(log), True, None, tmp_path) == 0
    assert json.loads(capsys.readouterr().out) == {"findings": []}


def test_command_source_makes_paths_relative(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "tf"
    source.mkdir()
    log = tmp_path / "a05.log"
    log.write_text(by_name("A05").body.decode().replace("/home/ggg/000/tensorflow", str(source)))
    assert diagnose_command(str(log), True, str(source), tmp_path) == 1
    [finding] = json.loads(capsys.readouterr().out)["findings"]
    assert finding["build_file"] == "tensorflow/core/kernels/BUILD"
    assert finding["location"] == "tensorflow/core/kernels/BUILD:712:1"
    assert finding["headers"][1] == "tensorflow/core/graph/graph.h"


def test_command_source_must_be_a_directory(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    with pytest.raises(UsageError, match="--source"):
        diagnose_command(str(log), False, str(tmp_path / "missing"), tmp_path)


def test_markup_in_a_log_is_printed_literally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "m.log"
    log.write_text(
        "ERROR: /ws/[bold]x[/bold]/BUILD:1:1: undeclared inclusion(s) in rule '//[red]:t':\n"
        "this rule is missing dependency declarations for the following files included by 'a.c':\n"
        "  '[link]h.h'\n"
    )
    assert diagnose_command(str(log), False, None, tmp_path) == 1
    text = capsys.readouterr().out
    assert "[bold]x[/bold]" in text and "[link]h.h" in text


def test_doctests() -> None:
    results = doctest.testmod(diagnose)
    assert results.attempted > 10 and results.failed == 0


# -- fixes from issue 4's review -----------------------------------------------------------------


@pytest.mark.parametrize("cores,ram", [(8, 16384), (10, 65536), (4, 8192), (2, 2048), (1, 1024)])
def test_out_of_memory_advice_is_below_the_build_defaults(cores: int, ram: int) -> None:
    from tfwheels.hostinfo import resources

    host = HostResources(cores=cores, total_ram_mb=ram)
    default = resources(cores, ram)
    assert host.jobs < default.jobs or host.jobs == default.jobs == 1
    assert host.local_ram_resources < default.local_ram_mb
    assert 0.3 * ram <= host.local_ram_resources <= 0.4 * ram or ram < 2048


def test_out_of_memory_advice_is_below_what_the_log_shows_the_build_used() -> None:
    log = (
        b"+ bazel build --jobs=3 --local_ram_resources=5000 //tensorflow/tools/pip_package:wheel\n"
        + b"INFO: Analyzed target //tensorflow/tools/pip_package:wheel\n" * 40
        + b"gcc: internal compiler error: Killed (program cc1plus)\n"
    )
    [finding] = from_bytes(log)
    assert isinstance(finding, OutOfMemory)
    assert (finding.build_jobs, finding.build_local_ram_resources) == (3, 5000)
    assert finding.jobs == 1 and finding.local_ram_resources == 3750
    assert "--jobs=1 --local_ram_resources=3750" in finding.fix
    assert as_json(from_text(log)) == as_json([finding])


def test_out_of_memory_host_ram_share_in_the_log() -> None:
    log = b"INFO: 'build' options: --jobs 16 --local_ram_resources=HOST_RAM*.25\nKilled signal terminated program cc1plus\n"
    [finding] = from_bytes(log)
    assert (finding.build_jobs, finding.build_local_ram_resources) == (16, 4096)
    assert (finding.jobs, finding.local_ram_resources) == (HOST.jobs, 3072)


@pytest.mark.parametrize(
    "line,have,needs",
    [
        ("dlopen(/x/_m.so, 0x0002): tried: '/x/_m.so' (mach-o file, but is an incompatible "
         "architecture (have 'x86_64', need 'arm64e' or 'arm64'))", "x86_64", ["arm64e", "arm64"]),
        ("dlopen(/x/_m.so, 0x0002): tried: '/x/_m.so' (mach-o file, but is an incompatible "
         "architecture (have 'x86_64', need 'arm64e.v1'))", "x86_64", ["arm64e.v1"]),
        ("'/x/_m.so' (mach-o file, but is an incompatible architecture (have 'arm64', need "
         "'x86_64h' or 'x86_64'))", "arm64", ["x86_64h", "x86_64"]),
    ],
)
def test_newer_macos_architecture_wording(line: str, have: str, needs: list[str]) -> None:
    [finding] = from_bytes(line.encode())
    data = finding.to_json()
    assert data["kind"] == "incompatible-architecture" and data["file"] == "/x/_m.so"
    assert (data["have"], data["need"], data["needs"]) == (have, needs[0], needs)


@pytest.mark.parametrize(
    "header,apple",
    [
        ("/usr/lib/llvm-17/include/c++/v1/vector", False),
        ("/opt/homebrew/opt/llvm/include/c++/v1/__config", False),
        ("/usr/local/opt/llvm@16/lib/clang/16/include/stddef.h", False),
        ("/Users/me/Downloads/Xcode-beta.app/Contents/Developer/Toolchains/"
         "XcodeDefault.xctoolchain/usr/include/c++/v1/string", True),
    ],
)
def test_llvm_and_relocated_xcode_headers_are_toolchain_headers(header: str, apple: bool) -> None:
    log = (
        "ERROR: /ws/pkg/BUILD:3:10: Compiling pkg/a.cc failed: undeclared inclusion(s) in rule "
        "'//pkg:a':\nthis rule is missing dependency declarations for the following files "
        f"included by 'pkg/a.cc':\n  '{header}'\n"
    )
    [finding] = from_bytes(log.encode())
    assert isinstance(finding, UndeclaredInclusion) and finding.toolchain
    assert "Do not patch BUILD" in finding.fix and "invoke build-tf --fix" not in finding.fix
    assert ("xcode-select" in finding.fix) is apple
    assert diagnose.is_toolchain_header(header)
    assert not diagnose.is_toolchain_header("/home/me/src/llvm-project/include/llvm/ADT/c.h")


def test_nccl_advice_does_not_offer_fix() -> None:
    [finding] = from_bytes(by_name("A09").body)
    assert "--config=nonccl" in finding.fix
    assert "does this for you" not in finding.fix
    assert "cannot fix this one" in finding.fix


def test_only_recovered_findings_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "c04.log"
    log.write_bytes(by_name("C04").body)
    assert diagnose_command(str(log), True, None, tmp_path) == 0
    [finding] = json.loads(capsys.readouterr().out)["findings"]
    assert finding["recovered"] is True
    assert diagnose_command(str(log), False, None, tmp_path) == 0
    assert "All recovered" in capsys.readouterr().out
    log.write_bytes(by_name("C04").body + b"\nKilled signal terminated program cc1plus\n")
    assert diagnose_command(str(log), True, None, tmp_path) == 1


@pytest.mark.parametrize(
    "line",
    [
        "[1,234 / 9,876] Compiling tensorflow/core/platform/errors.cc; 3s local",
        "  exec env - /usr/bin/clang -Wall -Werror=return-type -Wno-error=unused -c errors.cc",
        "    Fetching https://mirror.bazel.build/github.com/abseil/abseil-cpp/archive/x.tar.gz",
        "INFO: From Compiling tensorflow/core/kernels/conv_ops.cc: warning: unused [-Wunused]",
        "ld: warning: -undefined dynamic_lookup may not work (architecture arm64)",
    ],
)
def test_healthy_lines_with_trigger_words_are_not_context(line: str) -> None:
    """The prefilter skips them: the lines after are not parsed (the benchmark's worst case)."""
    assert not diagnose._has_needle(line)
    assert not diagnose._has_needle_bytes(line.encode())
