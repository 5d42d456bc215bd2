"""Like TensorFlow's third_party/py/python_repo.bzl (TF >= 2.17): a repository whose py.bzl holds
the wheel's distribution name, read from `--repo_env=WHEEL_NAME=...` (default "tensorflow")."""

def _python_repository_impl(ctx):
    wheel_name = ctx.os.environ.get("WHEEL_NAME", "tensorflow")
    ctx.file("BUILD", "")
    ctx.file("py.bzl", 'WHEEL_NAME = "%s"\n' % wheel_name)

python_repository = repository_rule(
    implementation = _python_repository_impl,
    environ = ["WHEEL_NAME"],
    local = True,
)
