#!/usr/bin/env bash
# Prints the paths of the CustomResourceDefinitions helm/monitoring's dependency would install,
# one file a line, taken from the upstream release it pins (versions.env):
# prometheus-operator PROMETHEUS_OPERATOR_VERSION, example/prometheus-operator-crd, the CRDs
# kube-prometheus-stack 88.5.3 (appVersion v0.93.1) ships in its crds subchart, identical in
# their specs.
#
# Where that dependency cannot be had, these CRDs let helm/monitoring install with it
# disabled. (helm/kfp's dependency, the argo-workflows chart, comes from its release archive:
# upstream.sh charts.) Go modules are how upstream source reaches this machine: `go mod
# download` puts each release, read-only, into the Go module cache; nothing is copied into the
# clone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=k8s/local/versions.env
. "$here/versions.env"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

module_dir() {  # module_dir MODULE@VERSION: the module's directory in the Go module cache
  local json
  # Outside any main module, so no go.mod or go.work around the caller is consulted.
  if ! json=$(cd / && GOWORK=off go mod download -json "$1"); then
    printf 'upstream-crds: go mod download %s failed:\n%s\n' "$1" "$json" >&2
    return 1
  fi
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])' <<<"$json"
}

print_crds() {  # print_crds DIR GLOB: the CRD files, failing when the release has none there
  local files
  files=$(find "$1" -maxdepth 1 -name "$2" -type f | sort)
  [ -n "$files" ] || { echo "upstream-crds: no $2 in $1" >&2; return 1; }
  echo "$files"
}

operator=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
print_crds "$operator/example/prometheus-operator-crd" 'monitoring.coreos.com_*.yaml'
