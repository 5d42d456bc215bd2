"""Make the TensorFlow wheel in a local folder available as @org_tensorflow."""

_BUILD = """
package(default_visibility = ["//visibility:public"])

cc_library(
    name = "tensorflow_framework",
    srcs = ["tensorflow/libtensorflow_framework.so.2"],
    hdrs = glob(["tensorflow/include/**/*.h"]),
    strip_include_prefix = "tensorflow/include",
)
"""

def _local_tf_wheel_impl(ctx):
    folder = ctx.os.environ.get("LOCAL_WHEEL_DIST_FOLDER", "")
    if not folder:
        fail("LOCAL_WHEEL_DIST_FOLDER is not set: build the TensorFlow wheel first " +
             "(invoke build-tf) and pass --repo_env=LOCAL_WHEEL_DIST_FOLDER=<folder>")
    wheels = [
        p
        for p in ctx.path(folder).readdir()
        if p.basename.startswith("tensorflow-") and p.basename.endswith(".whl")
    ]
    if len(wheels) != 1:
        fail("expected one tensorflow-*.whl in %s, found %d" % (folder, len(wheels)))

    # A wheel is a zip file; Bazel 4 picks the archive type by extension.
    ctx.symlink(wheels[0], "tensorflow_wheel.zip")
    ctx.extract("tensorflow_wheel.zip")
    ctx.file("BUILD.bazel", _BUILD)

local_tf_wheel = repository_rule(
    implementation = _local_tf_wheel_impl,
    environ = ["LOCAL_WHEEL_DIST_FOLDER", "LOCAL_WHEEL_DIST_FOLDER_DIGEST"],
    local = True,
)
