#!/usr/bin/env bash
# The minikube profile of the tfx-kfp-gke local path: one node, Kubernetes v1.34.11 (the
# version of the kind node image), 4 CPUs and 12 GiB (KFP with MySQL and SeaweedFS takes
# about 2 GiB, each pipeline step requests 0.5 CPU and 2 GiB), and the store mounted at
# /var/local/tfx, where k8s/overlays/minikube's volumes expect it.
#
#   k8s/minikube/profile.sh up [minikube start flags]   create or restart the profile
#   k8s/minikube/profile.sh down                        delete the profile (the store stays)
#
# Flags after `up` go to `minikube start` last, so they win: `up --driver=docker`,
# `up --memory=10g`. TFX_STORE_DIR overrides the store directory (default .minikube/tfx in
# the repository). Then: kubectl --context tfx-kfp-gke apply -k k8s/overlays/minikube
set -euo pipefail

# The overlay pins the store's volumes to the node minikube names after the profile.
readonly PROFILE=tfx-kfp-gke
readonly KUBERNETES_VERSION=v1.34.11
readonly CPUS=4
readonly MEMORY=12g
readonly NODE_STORE=/var/local/tfx
# Pipeline steps and TF Serving run as uid/gid 1000.
readonly STORE_UID=1000
readonly STORE_GID=1000

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly repo_root

usage() {
  echo "usage: $0 up [minikube start flags] | down" >&2
  exit 2
}

# Creates the store layout and prints its absolute path (minikube needs one).
prepare_store() {
  local store="${TFX_STORE_DIR:-$repo_root/.minikube/tfx}"
  mkdir -p "$store/data/social_network_ads" "$store/serving/social_network_ads"
  store="$(cd "$store" && pwd)"
  # The docker and podman drivers bind-mount the directory as it is, so uid 1000 needs write
  # permission here; VM drivers mount it over 9p as --mount-uid/--mount-gid. Only the
  # directories this user owns: the Pusher creates model versions as uid 1000.
  local dir
  for dir in "$store" "$store/data" "$store/data/social_network_ads" \
    "$store/serving" "$store/serving/social_network_ads"; do
    if [[ -O "$dir" ]]; then
      chmod a+rwx "$dir"
    fi
  done
  printf '%s\n' "$store"
}

up() {
  local store
  store="$(prepare_store)"
  minikube start \
    --profile "$PROFILE" \
    --nodes 1 \
    --kubernetes-version "$KUBERNETES_VERSION" \
    --cpus "$CPUS" \
    --memory "$MEMORY" \
    --mount-string "$store:$NODE_STORE" \
    --mount-uid "$STORE_UID" \
    --mount-gid "$STORE_GID" \
    "$@"
}

down() {
  minikube delete --profile "$PROFILE"
}

main() {
  if [[ $# -lt 1 ]]; then
    usage
  fi
  local command="$1"
  shift
  case "$command" in
    up) up "$@" ;;
    down)
      if [[ $# -gt 0 ]]; then
        usage
      fi
      down
      ;;
    *) usage ;;
  esac
}

main "$@"
