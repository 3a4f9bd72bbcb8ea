#!/usr/bin/env bash
# Upstream release sources that no registry here serves (Kubeflow Pipelines, Argo Workflows'
# source, helm/kfp's dependency chart), obtained the way a networked machine obtains them with
# `git clone --branch TAG` or `helm dependency build`, pinned in versions.env:
#
#   k8s/local/upstream.sh source kfp|argo   unpack the release source into the build cache
#                                           (once) and print its directory
#   k8s/local/upstream.sh charts            put helm/kfp's dependency chart into helm/kfp/charts
#
# Each archive comes from $TFXKFP_UPSTREAM (a directory of pinned release archives; CI points it
# at ../shared/upstream) when it is there, checked against its pinned sha256. Otherwise a
# source is downloaded as GitHub's tarball of the tag and checked against the pinned commit id,
# which `git archive` writes into both; a chart comes from its repository through
# `helm dependency build`. Nothing is copied into the repository: sources unpack under
# $TFXKFP_CACHE/src, and helm/kfp/charts/ is ignored by git, as after `helm dependency build`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=k8s/local/versions.env
. "$here/versions.env"
cache=${TFXKFP_CACHE:-$HOME/.cache/tfx-kfp-gke}
upstream=${TFXKFP_UPSTREAM:-}

die() { echo "upstream: error: $*" >&2; exit 1; }

check_sha256() {  # check_sha256 FILE SHA256
  local actual
  actual=$(sha256sum <"$1" | cut -d' ' -f1)
  [ "$actual" = "$2" ] || die "$1: sha256 is $actual, versions.env pins $2"
}

# fetch_source NAME ARCHIVE SHA256 URL COMMIT: the verified archive's path.
fetch_source() {
  local name=$1 archive=$2 sha256=$3 url=$4 commit=$5 downloaded
  if [ -n "$upstream" ] && [ -f "$upstream/$archive" ]; then
    check_sha256 "$upstream/$archive" "$sha256"
    echo "$upstream/$archive"
    return
  fi
  mkdir -p "$cache/downloads"
  downloaded=$cache/downloads/$name-$commit.tar.gz
  if [ ! -s "$downloaded" ]; then
    echo "upstream: $archive not in \$TFXKFP_UPSTREAM (${upstream:-unset}); downloading $url" >&2
    curl -fsSL --retry 3 -o "$downloaded.partial" "$url" || die "download of $url failed"
    mv "$downloaded.partial" "$downloaded"
  fi
  local found
  found=$(gunzip -c "$downloaded" | git get-tar-commit-id) || true
  [ "$found" = "$commit" ] || die "$url: commit ${found:-unknown}, versions.env pins $commit"
  echo "$downloaded"
}

# source_dir NAME ARCHIVE SHA256 URL COMMIT: the unpacked source, unpacked once per commit.
# Both kinds of archive hold one top directory, whatever its name: it is stripped.
source_dir() {
  local name=$1 commit=$5 dir archive
  dir=$cache/src/$name-${commit:0:12}
  if [ ! -f "$dir/.unpacked" ]; then
    archive=$(fetch_source "$@")
    rm -rf "$dir" && mkdir -p "$dir"
    tar -xzf "$archive" -C "$dir" --strip-components=1
    touch "$dir/.unpacked"
  fi
  echo "$dir"
}

charts() {
  local chart_dir=$repo/helm/kfp/charts
  mkdir -p "$chart_dir"
  if [ -n "$upstream" ] && [ -f "$upstream/$ARGO_CHART_ARCHIVE" ]; then
    check_sha256 "$upstream/$ARGO_CHART_ARCHIVE" "$ARGO_CHART_ARCHIVE_SHA256"
    cp "$upstream/$ARGO_CHART_ARCHIVE" "$chart_dir/$ARGO_CHART_ARCHIVE"
  else
    command -v helm >/dev/null || die "no $ARGO_CHART_ARCHIVE in \$TFXKFP_UPSTREAM and no helm on PATH"
    helm repo add argo https://argoproj.github.io/argo-helm >/dev/null
    helm dependency build "$repo/helm/kfp" >&2
  fi
  echo "$chart_dir"
}

case ${1:-} in
  source)
    case ${2:-} in
      kfp) source_dir kfp "$KFP_ARCHIVE" "$KFP_ARCHIVE_SHA256" "$KFP_URL" "$KFP_COMMIT" ;;
      argo) source_dir argo-workflows "$ARGO_WORKFLOWS_ARCHIVE" "$ARGO_WORKFLOWS_ARCHIVE_SHA256" \
              "$ARGO_WORKFLOWS_URL" "$ARGO_WORKFLOWS_COMMIT" ;;
      *) echo "usage: $0 source kfp|argo" >&2; exit 2 ;;
    esac ;;
  charts) charts ;;
  *) echo "usage: $0 source kfp|argo | charts" >&2; exit 2 ;;
esac
