#!/usr/bin/env bash
# Builds the Debian image every other non-scratch image of the local cluster starts from, where
# no registry can be pulled from: Debian bookworm (minbase) from Debian's packages, with CA
# certificates, curl, wget and time zones, the tools upstream's images carry for their probes,
# hooks and schedules (KFP's images: wget and tzdata; the helm test pods: curl).
#
#   k8s/local/debian-base.sh IMAGE     build IMAGE into buildah's storage
#   k8s/local/debian-base.sh --inputs  print everything the image is made from, one per line;
#                                      build-images.sh keys the image by a hash of it
#
# A script rather than a Dockerfile: a Dockerfile needs a FROM image, and there is none to
# pull. debootstrap writes the root filesystem straight into the mount of a `buildah from
# scratch` container; the rest runs in that container (`buildah run`).
set -euo pipefail
cache=${TFXKFP_CACHE:-$HOME/.cache/tfx-kfp-gke}
# Its own storage under the cache, never the host's /var/lib/containers (build-images.sh
# passes the same two directories).
buildah=(buildah --root "${BUILDAH_ROOT:-$cache/buildah/root}"
         --runroot "${BUILDAH_RUNROOT:-$cache/buildah/runroot}" --storage-driver overlay)
# Debian packages of earlier builds (debootstrap's and apt's), mounted during the build only.
debs=$cache/debs

DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SECURITY_MIRROR=http://deb.debian.org/debian-security
PACKAGES=(ca-certificates curl wget tzdata)

inputs() {
  echo "debian $DEBIAN_SUITE $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR"
  echo "packages ${PACKAGES[*]}"
  echo "script $(sha256sum <"$0" | cut -d' ' -f1)"
}

if [ "${1:-}" = --inputs ]; then inputs; exit 0; fi
[ $# -eq 1 ] || { echo "usage: $0 IMAGE | --inputs" >&2; exit 2; }
image=$1
mkdir -p "$debs"

container=$("${buildah[@]}" from scratch)
trap '"${buildah[@]}" rm "$container" >/dev/null 2>&1 || true' EXIT
rootfs=$("${buildah[@]}" mount "$container")

# Priority-required packages and apt only: no init system, no docs packages.
debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  --cache-dir="$debs" \
  "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR"
# Nothing of the build host's stays: the runtime mounts its own /dev, resolv.conf, hostname.
find "$rootfs/dev" -mindepth 1 -delete
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"

# Later dpkg runs (here and in images built on this one) skip docs, man pages and
# translations, as Debian's slim images do; licences (copyright files) stay.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
# Security and point-release updates too, not only the suite debootstrap fetched.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY_MIRROR
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# shellcheck disable=SC2016  # $@ is the container shell's
"${buildah[@]}" run --network host --env DEBIAN_FRONTEND=noninteractive \
  --volume "$debs:/var/cache/apt/archives" "$container" -- sh -euc '
  apt-get update -q
  apt-get upgrade -y -q
  apt-get install -y -q --no-install-recommends "$@"
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/apt \
    /var/log/dpkg.log /var/log/alternatives.log /var/log/bootstrap.log
  # What debootstrap unpacked before the dpkg excludes existed.
  find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
  find /usr/share/doc -mindepth 1 -type d -empty -delete
  rm -rf /usr/share/man/* /usr/share/info/* /usr/share/locale/* /usr/share/lintian/*
  ' sh "${PACKAGES[@]}"
# buildah run leaves an empty /etc/hosts behind; a runtime that mounts none of its own (ctr
# run) must still resolve localhost.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
chmod 0644 "$rootfs/etc/hosts"

"${buildah[@]}" config \
  --env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --env LANG=C.UTF-8 \
  --cmd '["bash"]' \
  --label org.opencontainers.image.title="tfx-kfp-gke debian base" \
  --label org.opencontainers.image.description="Debian $DEBIAN_SUITE minbase with ${PACKAGES[*]}: the local cluster's base image" \
  "$container"
"${buildah[@]}" commit --quiet --rm "$container" "$image" >/dev/null
trap - EXIT
echo "$image"
