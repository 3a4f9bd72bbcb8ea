#!/usr/bin/env bash
# Builds the image that stands in for tensorflow/tfx:1.16.0 on the local cluster, where no
# registry can be pulled from: the local cluster's Debian base (debian-base.sh), Python 3.11
# from Debian's packages, and the project's pinned TFX stack in a virtualenv at /opt/venv,
# first on PATH.
#
#   k8s/local/python-base.sh BASE IMAGE  build IMAGE on BASE into buildah's storage
#   k8s/local/python-base.sh --inputs    print everything the image is made from, one per
#                                        line; build-images.sh keys the image by a hash of it
#                                        and of BASE
#
# The TFX stack is installed as `make setup` installs it (DESIGN.md, Versions): pip
# $PIP_VERSION, --ignore-requires-python, --constraint constraints.txt, and the package's
# runtime dependencies from pyproject.toml, without the package itself: the pipeline image
# (docker/pipeline/Dockerfile, BASE_IMAGE=this) adds it. So this is Python 3.11, where the
# real TFX image has 3.10 (the package imports on both), and it has no /opt/apache/beam/boot,
# the real image's entrypoint, which only Dataflow workers run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${TFXKFP_CACHE:-$HOME/.cache/tfx-kfp-gke}
# Its own storage under the cache, never the host's /var/lib/containers (build-images.sh
# passes the same two directories).
buildah=(buildah --root "${BUILDAH_ROOT:-$cache/buildah/root}"
         --runroot "${BUILDAH_RUNROOT:-$cache/buildah/runroot}" --storage-driver overlay)
# Debian packages of earlier builds, mounted during the build only. No such cache for pip:
# its HTTP cache keeps only responses whose headers allow it, and the egress proxy of this
# project's build VMs strips them; a wheelhouse filled by `pip download` was tried and saved
# about 30 s of a build of several minutes, for a second resolution.
debs=$cache/debs

VENV=/opt/venv
# Pulled in unpinned by astunparse (a TensorFlow dependency) and left out of constraints.txt
# by `make constraints`, so pinned here.
WHEEL_VERSION=0.48.0
# The pip `make setup` installs, and the build backend the pipeline Dockerfile's wheel stage
# pins: read from there so the two never disagree (that stage's install is then a no-op).
PIP_VERSION=$(sed -n 's/^PIP_VERSION *= *//p' "$repo/Makefile")
SETUPTOOLS_VERSION=$(grep -o 'setuptools==[0-9][0-9.]*' "$repo/docker/pipeline/Dockerfile" \
  | head -n 1 | cut -d= -f3)
[ -n "$PIP_VERSION" ] || { echo "python-base: no PIP_VERSION in Makefile" >&2; exit 1; }
[ -n "$SETUPTOOLS_VERSION" ] || {
  echo "python-base: no setuptools==<version> in docker/pipeline/Dockerfile" >&2; exit 1; }
# [project].dependencies of pyproject.toml: tfx==1.16.0 and the rest of what the package runs.
mapfile -t DEPENDENCIES < <(python3 -c '
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))
' "$repo/pyproject.toml")

inputs() {
  echo "pip==$PIP_VERSION setuptools==$SETUPTOOLS_VERSION wheel==$WHEEL_VERSION"
  echo "dependencies ${DEPENDENCIES[*]}"
  echo "constraints $(sha256sum <"$repo/constraints.txt" | cut -d' ' -f1)"
  echo "script $(sha256sum <"$0" | cut -d' ' -f1)"
}

if [ "${1:-}" = --inputs ]; then inputs; exit 0; fi
[ $# -eq 2 ] || { echo "usage: $0 BASE IMAGE | --inputs" >&2; exit 2; }
base=$1 image=$2
mkdir -p "$debs"

container=$("${buildah[@]}" from --pull-never "$base")
trap '"${buildah[@]}" rm "$container" >/dev/null 2>&1 || true' EXIT
rootfs=$("${buildah[@]}" mount "$container")

run=("${buildah[@]}" run --network host --env DEBIAN_FRONTEND=noninteractive)
# python3-venv for the venv's bootstrap pip; passwd (groupadd, useradd) and libc-bin (getent)
# are in minbase already, named anyway because the pipeline Dockerfile runs them. g++ and
# python3-dev build the few pinned distributions that have no wheel for this Python
# (pyfarmhash); they are purged before the commit, so no compiler is in the image.
"${run[@]}" --volume "$debs:/var/cache/apt/archives" "$container" -- sh -euc '
  apt-get update -q
  apt-get install -y -q --no-install-recommends \
    python3 python3-venv passwd libc-bin g++ python3-dev
  rm -rf /var/lib/apt/lists/*'

# What the install reads from the host, bound in for the build only: constraints.txt, and
# the host's CA bundle, which pip trusts instead of its own (a machine whose egress goes
# through a TLS-inspecting proxy has that proxy's CA there; the image keeps Debian's).
inbox=$(mktemp -d)
trap '"${buildah[@]}" rm "$container" >/dev/null 2>&1 || true; rm -rf "$inbox"' EXIT
cp "$repo/constraints.txt" "$inbox/constraints.txt"
cp "${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" "$inbox/ca-certificates.crt"

# The Makefile's install, into the venv (the script's $1, $2 ... are the arguments after it).
# shellcheck disable=SC2016
"${run[@]}" --env PIP_CERT=/var/tmp/build/ca-certificates.crt --env PIP_NO_CACHE_DIR=1 \
  --env PIP_DISABLE_PIP_VERSION_CHECK=1 --env PIP_ROOT_USER_ACTION=ignore \
  --env PIP_PROGRESS_BAR=off --volume "$inbox:/var/tmp/build:ro" \
  "$container" -- sh -euc '
  venv=$1 pip_version=$2; shift 2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "pip==$pip_version"
  "$venv/bin/python" -m pip install --quiet --ignore-requires-python \
    --constraint /var/tmp/build/constraints.txt "$@"
  "$venv/bin/python" -m pip check
  "$venv/bin/python" -c "import tensorflow, tfx.v1; print(\"tfx\", tfx.__version__, \"tensorflow\", tensorflow.__version__)"
  ' sh "$VENV" "$PIP_VERSION" \
  "setuptools==$SETUPTOOLS_VERSION" "wheel==$WHEEL_VERSION" "${DEPENDENCIES[@]}"
# buildah run leaves the mount point behind, empty.
rmdir "$rootfs/var/tmp/build"

"${run[@]}" "$container" -- sh -euc '
  apt-get purge -y -q --auto-remove g++ python3-dev
  rm -rf /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
    /var/log/alternatives.log'

"${buildah[@]}" config \
  --env "PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --env "VIRTUAL_ENV=$VENV" \
  --env LANG=C.UTF-8 \
  --cmd '["python"]' \
  --label org.opencontainers.image.title="tfx-kfp-gke python base" \
  --label org.opencontainers.image.description="Debian bookworm, Python 3.11 and the pinned TFX 1.16 stack: the local cluster's stand-in for tensorflow/tfx:1.16.0" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  "$container"
"${buildah[@]}" commit --quiet --rm "$container" "$image" >/dev/null
trap - EXIT
echo "$image"
