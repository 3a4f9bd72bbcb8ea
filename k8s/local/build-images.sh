#!/usr/bin/env bash
# Builds every image the local cluster (k8s/local) runs, as docker-archive tarballs that the
# node's containerd imports (`ctr -n k8s.io images import`), and writes
# build/local-images.env: <NAME>_IMAGE=<reference> and <NAME>_ARCHIVE=<tarball> for each:
# PAUSE, COREDNS, DEBIAN_BASE, PYTHON_BASE, PIPELINE, the stand-ins (TF_SERVING_STANDIN,
# ML_METADATA_STANDIN, MARIADB) and what helm/kfp runs, under the names and tags it runs
# (KFP_*, ARGO_*, SEAWEEDFS), and the volume provisioner (LOCAL_PATH_PROVISIONER).
#
# Nothing can be pulled on the machines this runs on, so every image is built from what can
# be had: the binaries of build-binaries.sh (Go modules and upstream release sources),
# Debian packages and PyPI. The Dockerfiles of the upstream programs' images are under
# k8s/local/images/.
#
# Each tarball is $TFXKFP_CACHE/images/<image>-<hash of its inputs>.tar. One that exists is
# used as it is, so a second run builds nothing; when an image's inputs change, its new
# tarball replaces the old one.
#
# `build-images.sh --push-pipeline REFERENCE` is skaffold's build of the pipeline image for
# the local cluster (skaffold.yaml, profile local): docker/pipeline/Dockerfile on the base
# image the cluster already has, pushed to REFERENCE's registry (cluster.sh runs one at
# localhost:5000). Run `make cluster-up` first: it writes the base's name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=k8s/local/versions.env
. "$here/versions.env"
cache=${TFXKFP_CACHE:-$HOME/.cache/tfx-kfp-gke}
archives=$cache/images
logs=$archives/logs
# buildah's own storage under the cache: never the host's /var/lib/containers, and the same
# storage python-base.sh builds into (it reads these two variables).
export BUILDAH_ROOT=$cache/buildah/root BUILDAH_RUNROOT=$cache/buildah/runroot
buildah=(buildah --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT" --storage-driver overlay)

# The references the cluster's containerd config and manifests name. PAUSE_VERSION is the
# sandbox image kubelet v1.34 expects; versions.env wins once it defines it.
PAUSE_IMAGE=registry.k8s.io/pause:${PAUSE_VERSION:-3.10}
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:$COREDNS_VERSION
# A stable name: images are built FROM it, and the tarball's key follows its inputs.
DEBIAN_BASE_IMAGE=localhost/tfx-kfp-gke/debian-base:bookworm
# helm/kfp's images: KFP's at the chart's appVersion, Argo's at the argo-workflows chart's.
KFP_IMAGE_PREFIX=ghcr.io/kubeflow/kfp
ARGO_IMAGE_PREFIX=quay.io/argoproj
# The version built (versions.env), not the 4.00 helm/kfp's default values name.
SEAWEEDFS_IMAGE=docker.io/chrislusf/seaweedfs:${SEAWEEDFS_VERSION#v}
LOCAL_PATH_PROVISIONER_IMAGE=docker.io/rancher/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION
MARIADB_IMAGE=localhost/tfx-kfp-gke/mariadb:10.11
# Tagged as the TF Serving release it stands in for: the one the tf-serving chart pins.
serving_tag=$(awk '/^image:/ {block = 1} block && $1 == "tag:" {gsub(/"/, "", $2); print $2; exit}' \
  "$repo/helm/tf-serving/values.yaml")
TF_SERVING_STANDIN_IMAGE=localhost/tfx-kfp-gke/tf-serving-standin:$serving_tag
standin_dir=tests/standins/tf_serving
mlmd_standin_dir=tests/standins/mlmd_server
# Tagged as the ml-metadata library it hands every request to.
ML_METADATA_STANDIN_IMAGE=localhost/tfx-kfp-gke/ml-metadata-standin:$(sed -n 's/^ml-metadata==//p' \
  "$repo/constraints.txt")
host_ca_bundle=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}

step="" log="" container="" line_open=""
# A failed command ends the script here: the end of the step's log, then one line saying
# which step failed.
on_exit() {
  local status=$?
  [ -z "$container" ] || "${buildah[@]}" rm "$container" >/dev/null 2>&1 || true
  [ "$status" -ne 0 ] && [ -n "$step" ] || return 0
  [ -z "$line_open" ] || echo "failed"
  [ ! -s "$log" ] || tail -n 20 "$log" | sed 's/^/  | /' >&2
  echo "build-images: error: $step failed (exit $status)${log:+; full log: $log}" >&2
}
trap on_exit EXIT
fail() { [ -z "$line_open" ] || echo "failed"; echo "build-images: error: $*" >&2; step=""; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root: debootstrap and buildah's overlay storage need it"
command -v buildah >/dev/null || fail "buildah is not installed (apt-get install buildah)"
command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"
[ -n "$serving_tag" ] || fail "no image.tag in helm/tf-serving/values.yaml"
mkdir -p "$archives" "$logs" "$repo/build"

# A short hash of standard input, for keys and tags.
short_hash() { sha256sum | cut -c1-16; }

# The files under the given repository paths, as a build context sends them (no bytecode,
# see /.dockerignore), hashed with their names.
tree_hash() {
  (cd "$repo" && find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum) | short_hash
}

# A FROM-scratch image holding one static binary as its entrypoint, as upstream's images do.
build_scratch() {
  local image=$1 binary=$2 user=$3 version=$4 name
  name=$(basename "$binary")
  container=$("${buildah[@]}" from scratch)
  "${buildah[@]}" copy --chmod 0755 "$container" "$binary" "/$name"
  "${buildah[@]}" config --entrypoint "[\"/$name\"]" --user "$user" \
    --label org.opencontainers.image.version="$version" \
    --label org.opencontainers.image.description="$name built from source by k8s/local/build-binaries.sh" \
    "$container"
  "${buildah[@]}" commit --rm "$container" "$image"
  container=""
}

build_pause() { build_scratch "$1" "$kube_bin/pause" 65535:65535 "$KUBERNETES_VERSION"; }
# Upstream's user (distroless "nonroot"). Upstream also gives the binary a file capability
# for port 53; here the pod allows it instead (coredns.yaml: ip_unprivileged_port_start).
build_coredns() { build_scratch "$1" "$coredns_bin/coredns" 65532:65532 "$COREDNS_VERSION"; }

build_debian_base() { "$here/debian-base.sh" "$1"; }
build_python_base() { "$here/python-base.sh" "$DEBIAN_BASE_IMAGE" "$1"; }

# docker/pipeline/Dockerfile itself, on the python base. --network none: every pip step of
# the Dockerfile finds its pin installed in the base already, so the build proves that too.
build_pipeline() {
  "${buildah[@]}" bud --pull-never --network none \
    --build-arg "BASE_IMAGE=$PYTHON_BASE_IMAGE" \
    -f "$repo/docker/pipeline/Dockerfile" -t "$1" "$repo"
}

# Its Dockerfile installs from PyPI: the RUN steps see the host's CA bundle in place of the
# image's, as python-base.sh's pip does (an egress proxy's CA is trusted where the host
# trusts it); the image keeps Debian's.
build_tf_serving_standin() {
  "${buildah[@]}" bud --pull-never --network host \
    --volume "$host_ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro" \
    --build-arg "BASE_IMAGE=$PYTHON_BASE_IMAGE" \
    -f "$repo/$standin_dir/Dockerfile" -t "$1" "$repo/$standin_dir"
}

build_ml_metadata_standin() {
  "${buildah[@]}" bud --pull-never --network none --build-arg "BASE_IMAGE=$PYTHON_BASE_IMAGE" \
    -f "$repo/$mlmd_standin_dir/Dockerfile" -t "$1" "$repo/$mlmd_standin_dir"
}

# Debian's MariaDB: its RUN step installs from Debian's mirror.
build_mariadb() {
  "${buildah[@]}" bud --pull-never --network host --build-arg "BASE_IMAGE=$DEBIAN_BASE_IMAGE" \
    -f "$here/images/mariadb/Dockerfile" -t "$1" "$here/images/mariadb"
}

# from_binaries REFERENCE IMAGE_DIR TARGET FILE...: k8s/local/images/IMAGE_DIR/Dockerfile's
# TARGET ("" for none) on the Debian base, with a build context of exactly FILEs (binaries
# built by build-binaries.sh, files of a release source). --network none: nothing is fetched.
from_binaries() {
  local reference=$1 dir=$2 target=$3 context; shift 3
  context=$(mktemp -d)
  cp "$@" "$context/"
  "${buildah[@]}" bud --pull-never --network none --build-arg "BASE_IMAGE=$DEBIAN_BASE_IMAGE" \
    --build-arg "TAG_NAME=$KFP_VERSION" --build-arg "COMMIT_SHA=$KFP_COMMIT" \
    ${target:+--target "$target"} -f "$here/images/$dir/Dockerfile" -t "$reference" "$context"
  rm -rf "$context"
}
build_kfp_api_server() {
  from_binaries "$1" kfp api-server "$kfp_bin/apiserver" \
    "$kfp_source/backend/src/apiserver/config/config.json"
}
build_kfp_persistence_agent() { from_binaries "$1" kfp persistence-agent "$kfp_bin/persistence_agent"; }
build_kfp_scheduled_workflow_controller() {
  from_binaries "$1" kfp scheduled-workflow-controller "$kfp_bin/controller"
}
build_kfp_driver() { from_binaries "$1" kfp driver "$kfp_bin/driver"; }
build_kfp_launcher() { from_binaries "$1" kfp launcher "$kfp_bin/launcher-v2"; }
build_workflow_controller() {
  from_binaries "$1" argo workflow-controller "$argo_bin/workflow-controller"
}
build_argoexec() { from_binaries "$1" argo argoexec "$argo_bin/argoexec"; }
build_seaweedfs() { from_binaries "$1" seaweedfs "" "$seaweedfs_bin/weed"; }
build_local_path_provisioner() {
  from_binaries "$1" local-path-provisioner "" "$provisioner_bin/local-path-provisioner"
}

# restore IMAGE ARCHIVE: an image to build on must be in buildah's storage; after a cache
# wipe only its tarball is.
restore() {
  if ! "${buildah[@]}" inspect --type image "$1" >/dev/null 2>&1; then
    step="loading $1 from $2" log=$logs/restore.log
    "${buildah[@]}" pull --quiet "docker-archive:$2" >"$log" 2>&1
  fi
}
restore_base() { restore "$PYTHON_BASE_IMAGE" "$PYTHON_BASE_ARCHIVE"; }

if [ "${1:-}" = --push-pipeline ]; then
  reference=${2:?usage: build-images.sh --push-pipeline REFERENCE}
  [ -s "$repo/build/local-images.env" ] || fail "no build/local-images.env: run make cluster-up first"
  PYTHON_BASE_IMAGE=$(sed -n 's/^PYTHON_BASE_IMAGE=//p' "$repo/build/local-images.env")
  PYTHON_BASE_ARCHIVE=$(sed -n 's/^PYTHON_BASE_ARCHIVE=//p' "$repo/build/local-images.env")
  restore_base
  step="building $reference" log=""
  build_pipeline "$reference"
  # Uncompressed layers: on one machine gzip only costs time, and the blobs then have the
  # digests of the layers containerd already holds from the base's tarball, so a push and a
  # pull move only the layers the Dockerfile adds.
  step="pushing $reference"
  "${buildah[@]}" push --tls-verify=false --disable-compression "$reference" "docker://$reference"
  exit 0
fi

# One line per image: its name as its build starts (a base build takes minutes), then
# whether it was built or cached, and in how many seconds.
line_start() { printf '%-20s ' "$1"; line_open=1; }
line_end() { printf '%-6s %4ds  %s\n' "$1" $((SECONDS - $2)) "$3"; line_open=""; }

env_lines=()
# image VAR SHORT REFERENCE KEY: builds REFERENCE with build_<short> unless SHORT-KEY.tar
# exists, exports it to that tarball, and records VAR_IMAGE and VAR_ARCHIVE.
image() {
  local var=$1 short=$2 reference=$3 key=$4 start=$SECONDS state=cached
  local archive=$archives/$short-$key.tar
  line_start "$short"
  if [ ! -s "$archive" ]; then
    state=built
    case $short in
      python-base | mariadb | kfp-* | workflow-controller | argoexec | seaweedfs | local-path-provisioner)
        restore "$DEBIAN_BASE_IMAGE" "$DEBIAN_BASE_ARCHIVE" ;;
      pipeline | tf-serving-standin | ml-metadata-standin) restore_base ;;
    esac
    step="building $reference" log=$logs/$short.log
    "build_${short//-/_}" "$reference" >"$log" 2>&1
    step="exporting $reference to $archive"
    rm -f "$archive.partial"
    "${buildah[@]}" push --quiet "$reference" "docker-archive:$archive.partial:$reference" \
      >>"$log" 2>&1
    mv "$archive.partial" "$archive"
    # Earlier tarballs of this image: superseded, and gigabytes each for the Python ones.
    find "$archives" -maxdepth 1 -name "$short-*.tar" ! -name "$short-$key.tar" -delete
    log=""
  fi
  line_end "$state" "$start" "$reference"
  printf -v "${var}_IMAGE" '%s' "$reference"
  printf -v "${var}_ARCHIVE" '%s' "$archive"
  env_lines+=("${var}_IMAGE=$reference" "${var}_ARCHIVE=$archive")
}

# Binaries: built once per version by build-binaries.sh, which prints their directories
# (kubernetes, coredns, skaffold, helm, registry, kfp, argo, seaweedfs, provisioner).
step="build-binaries.sh" log=$logs/binaries.log start=$SECONDS
line_start binaries
bin_dirs=$(bash "$here/build-binaries.sh" 2>"$log")
kube_bin=$(sed -n 1p <<<"$bin_dirs") coredns_bin=$(sed -n 2p <<<"$bin_dirs")
kfp_bin=$(sed -n 6p <<<"$bin_dirs") argo_bin=$(sed -n 7p <<<"$bin_dirs")
seaweedfs_bin=$(sed -n 8p <<<"$bin_dirs") provisioner_bin=$(sed -n 9p <<<"$bin_dirs")
for binary in "$kube_bin/pause" "$coredns_bin/coredns" "$kfp_bin/apiserver" "$argo_bin/argoexec" \
    "$seaweedfs_bin/weed" "$provisioner_bin/local-path-provisioner"; do
  [ -x "$binary" ] || fail "build-binaries.sh built no $binary: $bin_dirs"
done
kfp_source=$("$here/upstream.sh" source kfp 2>>"$log")
log=""
line_end ready "$start" "$(wc -l <<<"$bin_dirs") directories under $cache/bin"

# Keys: what goes into the image, and the recipe (the function that builds it).
recipe() { declare -f "$@" | short_hash; }
image PAUSE pause "$PAUSE_IMAGE" \
  "$({ sha256sum <"$kube_bin/pause"; echo "$PAUSE_IMAGE"; recipe build_scratch build_pause; } | short_hash)"
image COREDNS coredns "$COREDNS_IMAGE" \
  "$({ sha256sum <"$coredns_bin/coredns"; echo "$COREDNS_IMAGE"; recipe build_scratch build_coredns; } | short_hash)"

debian_key=$({ "$here/debian-base.sh" --inputs; recipe build_debian_base; } | short_hash)
image DEBIAN_BASE debian-base "$DEBIAN_BASE_IMAGE" "$debian_key"

base_key=$({ "$here/python-base.sh" --inputs; echo "$debian_key"; } | short_hash)
tfx_version=$(sed -n 's/^tfx==//p' "$repo/constraints.txt")
image PYTHON_BASE python-base "localhost/tfx-kfp-gke/python-base:$tfx_version-$base_key" "$base_key"

pipeline_key=$({ tree_hash .dockerignore pyproject.toml README.md pipeline docker/pipeline
                 echo "$PYTHON_BASE_IMAGE"; recipe build_pipeline; } | short_hash)
image PIPELINE pipeline "localhost/tfx-kfp-gke/pipeline:$pipeline_key" "$pipeline_key"

if [ -f "$repo/$standin_dir/Dockerfile" ]; then
  standin_key=$({ tree_hash "$standin_dir"; echo "$PYTHON_BASE_IMAGE $TF_SERVING_STANDIN_IMAGE"
                  recipe build_tf_serving_standin; } | short_hash)
  image TF_SERVING_STANDIN tf-serving-standin "$TF_SERVING_STANDIN_IMAGE" "$standin_key"
else
  line_start tf-serving-standin
  line_end skip "$SECONDS" "no $standin_dir/Dockerfile yet"
fi

mlmd_key=$({ tree_hash "$mlmd_standin_dir"; echo "$PYTHON_BASE_IMAGE $ML_METADATA_STANDIN_IMAGE"
             recipe build_ml_metadata_standin; } | short_hash)
image ML_METADATA_STANDIN ml-metadata-standin "$ML_METADATA_STANDIN_IMAGE" "$mlmd_key"
image MARIADB mariadb "$MARIADB_IMAGE" \
  "$({ tree_hash k8s/local/images/mariadb; echo "$debian_key $MARIADB_IMAGE"; recipe build_mariadb; } \
     | short_hash)"

# upstream IMAGE_VAR SHORT REFERENCE FILE...: an image of k8s/local/images, keyed by the
# files it is built from, its Dockerfile, the base and its recipe.
upstream() {
  local var=$1 short=$2 reference=$3 dir; shift 3
  case $short in kfp-*) dir=kfp ;; workflow-controller | argoexec) dir=argo ;; *) dir=$short ;; esac
  image "$var" "$short" "$reference" "$({ sha256sum "$@" | cut -d' ' -f1
    tree_hash "k8s/local/images/$dir"; echo "$debian_key $reference $KFP_VERSION $KFP_COMMIT"
    recipe from_binaries "build_${short//-/_}"; } | short_hash)"
}
upstream KFP_API_SERVER kfp-api-server "$KFP_IMAGE_PREFIX-api-server:$KFP_VERSION" \
  "$kfp_bin/apiserver" "$kfp_source/backend/src/apiserver/config/config.json"
upstream KFP_PERSISTENCE_AGENT kfp-persistence-agent \
  "$KFP_IMAGE_PREFIX-persistence-agent:$KFP_VERSION" "$kfp_bin/persistence_agent"
upstream KFP_SCHEDULED_WORKFLOW kfp-scheduled-workflow-controller \
  "$KFP_IMAGE_PREFIX-scheduled-workflow-controller:$KFP_VERSION" "$kfp_bin/controller"
upstream KFP_DRIVER kfp-driver "$KFP_IMAGE_PREFIX-driver:$KFP_VERSION" "$kfp_bin/driver"
upstream KFP_LAUNCHER kfp-launcher "$KFP_IMAGE_PREFIX-launcher:$KFP_VERSION" "$kfp_bin/launcher-v2"
upstream ARGO_WORKFLOW_CONTROLLER workflow-controller \
  "$ARGO_IMAGE_PREFIX/workflow-controller:$ARGO_WORKFLOWS_VERSION" "$argo_bin/workflow-controller"
upstream ARGO_EXEC argoexec "$ARGO_IMAGE_PREFIX/argoexec:$ARGO_WORKFLOWS_VERSION" "$argo_bin/argoexec"
upstream SEAWEEDFS seaweedfs "$SEAWEEDFS_IMAGE" "$seaweedfs_bin/weed"
upstream LOCAL_PATH_PROVISIONER local-path-provisioner "$LOCAL_PATH_PROVISIONER_IMAGE" \
  "$provisioner_bin/local-path-provisioner"

# buildah's storage keeps what the tarballs hold, no more (a python image is gigabytes):
# earlier tags of the content-tagged images go, and so do images a rebuild left untagged.
step="pruning buildah storage"
for current in "$PYTHON_BASE_IMAGE" "$PIPELINE_IMAGE"; do
  "${buildah[@]}" images --noheading --format '{{.Name}}:{{.Tag}}' --filter "reference=${current%:*}" \
    | awk -v current="$current" '$0 != current' | xargs -r "${buildah[@]}" rmi >/dev/null
done
"${buildah[@]}" rmi --prune >/dev/null

step="writing build/local-images.env"
printf '%s\n' "${env_lines[@]}" >"$repo/build/local-images.env.partial"
mv "$repo/build/local-images.env.partial" "$repo/build/local-images.env"
echo "wrote build/local-images.env"
