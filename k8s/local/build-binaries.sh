#!/usr/bin/env bash
# Builds the local cluster's upstream binaries from their Go modules at the versions in
# versions.env, into $TFXKFP_CACHE/bin/<module>@<version>/, and prints those directories
# one per line: kubernetes', CoreDNS', the dev-loop tools' (skaffold, helm, the image
# registry), then Kubeflow Pipelines' and its dependencies' (KFP, Argo Workflows, SeaweedFS,
# the local-path provisioner), then etcd's. A directory that is complete is not built again,
# so only the first cluster-up pays for the build. `--dirs` prints the directories, building
# none.
# `--promtool` builds and prints only Prometheus' promtool, which the offline suite runs
# to unit-test helm/monitoring's alert rules; it needs no cluster.
#
# k8s.io/kubernetes cannot be `go install`ed by version: its go.mod replaces the staging
# modules (k8s.io/api, k8s.io/client-go, ...) with directories of its own repository. A
# throwaway main module requires it and points each of those replacements at the staging
# module's published version (v0.<minor>.<patch>), which holds the same code.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=k8s/local/versions.env
. "$here/versions.env"
cache=${TFXKFP_CACHE:-$HOME/.cache/tfx-kfp-gke}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

kube_bin=$cache/bin/k8s.io/kubernetes@$KUBERNETES_VERSION
kube_commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
coredns_bin=$cache/bin/github.com/coredns/coredns@$COREDNS_VERSION
skaffold_module=github.com/GoogleContainerTools/skaffold/v2
skaffold_bin=$cache/bin/$skaffold_module@$SKAFFOLD_VERSION
helm_module=helm.sh/helm/v3
helm_bin=$cache/bin/$helm_module@$HELM_VERSION
registry_module=github.com/distribution/distribution/v3
registry_bin=$cache/bin/$registry_module@$REGISTRY_VERSION
prometheus_module=github.com/prometheus/prometheus
promtool_bin=$cache/bin/$prometheus_module@$PROMETHEUS_VERSION
etcd_module=go.etcd.io/etcd/server/v3
etcd_bin=$cache/bin/$etcd_module@$ETCD_VERSION
# Built from release sources (upstream.sh), keyed by the commit they were cut from.
kfp_bin=$cache/bin/github.com/kubeflow/pipelines@$KFP_VERSION-${KFP_COMMIT:0:12}
argo_bin=$cache/bin/github.com/argoproj/argo-workflows@$ARGO_WORKFLOWS_VERSION-${ARGO_WORKFLOWS_COMMIT:0:12}
seaweedfs_module=github.com/seaweedfs/seaweedfs
seaweedfs_bin=$cache/bin/$seaweedfs_module@$SEAWEEDFS_VERSION
provisioner_module=github.com/rancher/local-path-provisioner
provisioner_bin=$cache/bin/$provisioner_module@$LOCAL_PATH_PROVISIONER_VERSION

build_kubernetes() {
  local work=$cache/build/kubernetes@$KUBERNETES_VERSION staging_version minor patch
  minor=$(cut -d. -f2 <<<"$KUBERNETES_VERSION"); patch=$(cut -d. -f3 <<<"$KUBERNETES_VERSION")
  staging_version=v0.$minor.$patch
  mkdir -p "$work" && cd "$work"
  local upstream_mod
  upstream_mod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module tfxkfp.local/kubernetes-build"
    grep -E '^(go|godebug) ' "$upstream_mod"
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo "replace ("
    sed -nE "s#^\s*(k8s\.io/[a-z0-9-]+) => \./staging/src/.*#\t\1 => \1 $staging_version#p" "$upstream_mod"
    echo ")"
  } > go.mod
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION"
  # The version stamps upstream's release build sets: the API server reports them, and
  # kubectl and Helm compare charts' kubeVersion constraints against them.
  local v=k8s.io/component-base/version
  local ldflags="-s -w -X $v.gitVersion=$KUBERNETES_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor"
  ldflags+=" -X $v.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
  mkdir -p "$kube_bin.partial"
  local packages=()
  for command in "${kube_commands[@]}"; do packages+=("k8s.io/kubernetes/cmd/$command"); done
  echo "building ${kube_commands[*]} from k8s.io/kubernetes@$KUBERNETES_VERSION" >&2
  go build -trimpath -ldflags "$ldflags" -o "$kube_bin.partial/" "${packages[@]}"
  # pause: the sandbox every pod's containers share. Upstream's own C source, built static.
  local source_dir
  source_dir=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  gcc -Os -static -DVERSION="$KUBERNETES_VERSION" -o "$kube_bin.partial/pause" \
    "$source_dir/build/pause/linux/pause.c"
  rm -rf "$kube_bin" && mv "$kube_bin.partial" "$kube_bin"
}

build_coredns() {
  echo "building coredns from github.com/coredns/coredns@$COREDNS_VERSION" >&2
  mkdir -p "$coredns_bin.partial"
  GOBIN=$coredns_bin.partial go install -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
  rm -rf "$coredns_bin" && mv "$coredns_bin.partial" "$coredns_bin"
}

# etcd's server module replaces its sibling modules (api, client, pkg) with directories of
# its repository; the same release publishes each of them at the same version, which is what
# a throwaway main module gets without those lines.
build_etcd() {
  local work=$cache/build/etcd@$ETCD_VERSION
  mkdir -p "$work" && cd "$work"
  printf 'module tfxkfp.local/etcd-build\n\ngo 1.24\n' >go.mod
  go get "$etcd_module@$ETCD_VERSION"
  echo "building etcd from $etcd_module@$ETCD_VERSION" >&2
  mkdir -p "$etcd_bin.partial"
  go build -trimpath -ldflags "-s -w" -o "$etcd_bin.partial/etcd" "$etcd_module"
  rm -rf "$etcd_bin" && mv "$etcd_bin.partial" "$etcd_bin"
}

# build_module MODULE VERSION DIR LDFLAGS COMMAND...: MODULE's COMMANDs (package paths inside
# it, "." for its root) built into DIR. `go install MODULE/COMMAND@VERSION` refuses modules
# whose go.mod has replace lines (skaffold's has six) and asks the proxy for the module's
# version list, which it refuses for skaffold; a throwaway main module that takes over those
# lines does neither.
build_module() {
  local module=$1 version=$2 dir=$3 ldflags=$4; shift 4
  local work=$cache/build/${module//\//_}@$version upstream_mod packages=() command
  mkdir -p "$work" && cd "$work"
  upstream_mod=$(go mod download -json "$module@$version" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  # Only module-to-module replacements can be taken over; a directory one would need the
  # module's own repository.
  if grep -qE '^\s*replace .*=> \.' "$upstream_mod"; then
    echo "build-binaries: $module@$version replaces a module with a directory" >&2; exit 1
  fi
  {
    echo "module tfxkfp.local/build"
    grep -E '^(go|godebug) ' "$upstream_mod"
    echo "require $module $version"
    grep -E '^replace ' "$upstream_mod" || true
  } > go.mod
  for command in "$@"; do  # "." is the module's root package
    if [ "$command" = . ]; then packages+=("$module"); else packages+=("$module/$command"); fi
  done
  go get "${packages[0]}@$version"
  echo "building $* from $module@$version" >&2
  mkdir -p "$dir.partial"
  go build -trimpath -ldflags "-s -w $ldflags" -o "$dir.partial/" "${packages[@]}"
  rm -rf "$dir" && mv "$dir.partial" "$dir"
}

# Kubeflow Pipelines' Go programs, from its release source, named and linked as its images
# have them (backend/Dockerfile*): the driver and launcher static (CGO_ENABLED=0 netgo), the
# API server and the two agents with cgo (go-sqlite3's driver, compiled into the storage
# code, needs it), against the glibc of Debian 12, the base of the images they run in.
build_kfp() {
  local source
  source=$("$here/upstream.sh" source kfp)
  cd "$source"
  echo "building the KFP $KFP_VERSION backend from its source ($source)" >&2
  mkdir -p "$kfp_bin.partial"
  local program cgo
  for program in 1:apiserver:backend/src/apiserver \
      1:persistence_agent:backend/src/agent/persistence \
      1:controller:backend/src/crd/controller/scheduledworkflow \
      0:driver:backend/src/v2/cmd/driver 0:launcher-v2:backend/src/v2/cmd/launcher-v2; do
    cgo=${program%%:*} program=${program#*:}
    CGO_ENABLED=$cgo go build -trimpath -tags netgo -ldflags "-s -w" \
      -o "$kfp_bin.partial/${program%%:*}" "./${program#*:}"
  done
  rm -rf "$kfp_bin" && mv "$kfp_bin.partial" "$kfp_bin"
}

# Argo's workflow-controller and argoexec from the release source, with the version stamps
# its release build sets (both log their version at start).
build_argo() {
  local source v=github.com/argoproj/argo-workflows/v3
  source=$("$here/upstream.sh" source argo)
  cd "$source"
  echo "building Argo Workflows $ARGO_WORKFLOWS_VERSION from its source ($source)" >&2
  mkdir -p "$argo_bin.partial"
  go build -trimpath -ldflags "-s -w -X $v.version=$ARGO_WORKFLOWS_VERSION \
    -X $v.gitCommit=$ARGO_WORKFLOWS_COMMIT -X $v.gitTag=$ARGO_WORKFLOWS_VERSION \
    -X $v.gitTreeState=clean" -o "$argo_bin.partial/" ./cmd/workflow-controller ./cmd/argoexec
  rm -rf "$argo_bin" && mv "$argo_bin.partial" "$argo_bin"
}

if [ "${1:-}" = --promtool ]; then
  [ -x "$promtool_bin/promtool" ] || build_module "$prometheus_module" "$PROMETHEUS_VERSION" \
    "$promtool_bin" "-X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    cmd/promtool
  echo "$promtool_bin"
  exit 0
fi
if [ "${1:-}" != --dirs ]; then
  [ -x "$kube_bin/pause" ] || build_kubernetes
  [ -x "$coredns_bin/coredns" ] || build_coredns
  # The version stamps each tool reports (skaffold version, helm version): skaffold checks
  # Helm's version before it deploys.
  [ -x "$skaffold_bin/skaffold" ] || build_module "$skaffold_module" "$SKAFFOLD_VERSION" \
    "$skaffold_bin" "-X $skaffold_module/pkg/skaffold/version.version=$SKAFFOLD_VERSION" cmd/skaffold
  [ -x "$helm_bin/helm" ] || build_module "$helm_module" "$HELM_VERSION" "$helm_bin" \
    "-X $helm_module/internal/version.version=$HELM_VERSION" cmd/helm
  [ -x "$registry_bin/registry" ] || build_module "$registry_module" "$REGISTRY_VERSION" \
    "$registry_bin" "-X $registry_module/version.version=$REGISTRY_VERSION" cmd/registry
  [ -x "$kfp_bin/launcher-v2" ] || build_kfp
  [ -x "$argo_bin/argoexec" ] || build_argo
  [ -x "$seaweedfs_bin/weed" ] || build_module "$seaweedfs_module" "$SEAWEEDFS_VERSION" \
    "$seaweedfs_bin" "" weed
  [ -x "$provisioner_bin/local-path-provisioner" ] || build_module "$provisioner_module" \
    "$LOCAL_PATH_PROVISIONER_VERSION" "$provisioner_bin" \
    "-X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" .
  [ -x "$etcd_bin/etcd" ] || build_etcd
fi
printf '%s\n' "$kube_bin" "$coredns_bin" "$skaffold_bin" "$helm_bin" "$registry_bin" \
  "$kfp_bin" "$argo_bin" "$seaweedfs_bin" "$provisioner_bin" "$etcd_bin"
