#!/usr/bin/env bash
# Build the TFF wheel, as TFF's tools/python_package/build_python_package.sh does, with the same
# Linux-only assumptions: it requires glibc 2.31 and tags the wheel manylinux_2_31_x86_64.
set -euo pipefail

output_dir="${BUILD_WORKING_DIRECTORY:-.}/dist"
version="${TFF_VERSION:-0.0.0}"
tf_requirement="${TF_REQUIREMENT:-tensorflow}"
for arg in "$@"; do
  case "${arg}" in
    --output_dir=*) output_dir="${arg#*=}" ;;
    --version=*) version="${arg#*=}" ;;
    --tf_requirement=*) tf_requirement="${arg#*=}" ;;
    *) echo "build_python_package: unknown argument ${arg}" >&2; exit 2 ;;
  esac
done

if ! ldd --version 2>&1 | grep -q "2.31"; then
  echo "ERROR: Expected GLIBC version to be 2.31, found: $(ldd --version 2>&1 | head -1)" >&2
  exit 1
fi
plat_name="manylinux_2_31_x86_64"

runfiles="${RUNFILES_DIR:-$0.runfiles}/org_tensorflow_federated"
python="${PYTHON_BIN_PATH:-python3}"
staging="$(mktemp -d "${TMPDIR:-/tmp}/tff_python_package.XXXXXX")"
trap 'rm -rf "${staging}"' EXIT

mkdir -p "${staging}/tensorflow_federated"
cp "${runfiles}/tensorflow_federated/python/__init__.py" "${staging}/tensorflow_federated/"
cp "${runfiles}/tensorflow_federated/libtff_core.so" "${staging}/tensorflow_federated/"
cp "${runfiles}/tools/python_package/setup.py" "${staging}/"
chmod -R u+w "${staging}"

mkdir -p "${output_dir}"
output_dir="$(cd "${output_dir}" && pwd)"
cd "${staging}"
TFF_VERSION="${version}" TF_REQUIREMENT="${tf_requirement}" \
  "${python}" -W ignore setup.py --quiet bdist_wheel --dist-dir "${output_dir}" --plat-name "${plat_name}"
echo "Wheel written to ${output_dir}"
