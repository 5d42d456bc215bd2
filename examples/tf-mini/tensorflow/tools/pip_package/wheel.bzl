"""A miniature of TensorFlow >= 2.17's `tf_wheel` rule (tensorflow/tools/pip_package/utils).

The wheel is made in a Bazel action, not by a program run after the build: the action writes it
into a directory output, `wheel_house/` (ctx.actions.declare_directory), so the wheel lands in
bazel-bin/tensorflow/tools/pip_package/wheel_house/<name>-<version>-<tags>.whl.

Where the names come from, as in TensorFlow:
- distribution: WHEEL_NAME in @python_version_repo//:py.bzl (`--repo_env=WHEEL_NAME=...`),
  unless the rule's `project_name` is set;
- version: `--define TF_VERSION=...` (the same value the native library is compiled with);
- tags: `--define WHEEL_PLATFORM_TAG=...` / `WHEEL_PYTHON_TAG=...`, or the rule's `platform_tag`
  / `python_tag`; with neither, the Python running the action picks the python tag and the
  platform tag is an error.
"""

load("@python_version_repo//:py.bzl", "WHEEL_NAME")

def _setting(ctx, attr, define):
    return getattr(ctx.attr, attr) or ctx.var.get(define, "")

def _wheel_impl(ctx):
    version = ctx.var.get("TF_VERSION", "")
    if not version:
        fail("set the wheel's version with --define TF_VERSION=<version>")
    platform_tag = _setting(ctx, "platform_tag", "WHEEL_PLATFORM_TAG")
    if not platform_tag:
        fail("set the wheel's platform tag: --define WHEEL_PLATFORM_TAG=<tag> (or platform_tag)")
    python_tag = _setting(ctx, "python_tag", "WHEEL_PYTHON_TAG")
    name = ctx.attr.project_name or WHEEL_NAME

    output = ctx.actions.declare_directory("wheel_house")
    args = ctx.actions.args()
    args.add("--output", output.path)
    args.add("--name", name)
    args.add("--version", version)
    args.add("--platform-tag", platform_tag)
    if python_tag:
        args.add("--python-tag", python_tag)
    inputs = [ctx.file._builder]
    for dest, target in [("tensorflow/__init__.py", ctx.attr.init), ("tensorflow/", ctx.attr.lib)]:
        for f in target.files.to_list():
            inputs.append(f)
            args.add("--file", (dest + f.basename if dest.endswith("/") else dest) + "=" + f.path)
    for f in ctx.files.headers:
        inputs.append(f)
        args.add("--file", "tensorflow/include/" + f.short_path + "=" + f.path)
    ctx.actions.run_shell(
        inputs = inputs,
        outputs = [output],
        # PYTHON_BIN_PATH comes from configure's `build --action_env PYTHON_BIN_PATH=...`.
        command = '"${PYTHON_BIN_PATH:-python3}" "$1" "${@:2}"',
        arguments = [ctx.file._builder.path, args],
        use_default_shell_env = True,
        mnemonic = "WheelBuild",
        progress_message = "Building the wheel %s" % output.short_path,
    )
    return [DefaultInfo(files = depset([output]))]

wheel = rule(
    implementation = _wheel_impl,
    attrs = {
        "lib": attr.label(mandatory = True, allow_files = True),
        "init": attr.label(mandatory = True, allow_single_file = [".py"]),
        "headers": attr.label_list(allow_files = [".h"]),
        "project_name": attr.string(doc = "Distribution name; default: WHEEL_NAME (--repo_env)."),
        "platform_tag": attr.string(doc = "Default: --define WHEEL_PLATFORM_TAG."),
        "python_tag": attr.string(doc = "Default: --define WHEEL_PYTHON_TAG, else the action's."),
        "_builder": attr.label(default = ":build_wheel.py", allow_single_file = True),
    },
    doc = "Build a wheel into the directory output wheel_house/.",
)
