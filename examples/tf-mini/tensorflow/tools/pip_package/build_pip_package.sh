#!/usr/bin/env bash
# Lay the built files out as a Python package and make a wheel with setuptools, as TensorFlow's
# build_pip_package does. Usage: build_pip_package OUTPUT_DIR [--plat-name TAG] [--version V]
set -euo pipefail

output_dir=""
plat_name=""
version="${TF_VERSION:-0.0.0}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --plat-name) plat_name="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    -*) echo "build_pip_package: unknown flag $1" >&2; exit 2 ;;
    *) output_dir="$1"; shift ;;
  esac
done
if [[ -z "${output_dir}" ]]; then
  echo "usage: build_pip_package OUTPUT_DIR [--plat-name TAG] [--version V]" >&2
  exit 2
fi

runfiles="${RUNFILES_DIR:-$0.runfiles}/org_tensorflow"
python="${PYTHON_BIN_PATH:-python3}"
staging="$(mktemp -d "${TMPDIR:-/tmp}/tf_pip_package.XXXXXX")"
trap 'rm -rf "${staging}"' EXIT

mkdir -p "${staging}/tensorflow/include/tensorflow/core/framework" \
         "${staging}/tensorflow/include/tensorflow/core/platform"
cp "${runfiles}/tensorflow/python/__init__.py" "${staging}/tensorflow/__init__.py"
cp "${runfiles}/tensorflow/libtensorflow_framework.so.2" "${staging}/tensorflow/"
cp "${runfiles}/tensorflow/core/framework/tensor.h" "${staging}/tensorflow/include/tensorflow/core/framework/"
cp "${runfiles}/tensorflow/core/platform/logging.h" "${staging}/tensorflow/include/tensorflow/core/platform/"
cp "${runfiles}/tensorflow/tools/pip_package/setup.py" "${staging}/"
chmod -R u+w "${staging}"

mkdir -p "${output_dir}"
output_dir="$(cd "${output_dir}" && pwd)"
cd "${staging}"
args=(bdist_wheel --dist-dir "${output_dir}")
if [[ -n "${plat_name}" ]]; then
  args+=(--plat-name "${plat_name}")
fi
TF_VERSION="${version}" "${python}" -W ignore setup.py --quiet "${args[@]}"
echo "Output wheel file is in: ${output_dir}"
