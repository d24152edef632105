#!/usr/bin/env bash
# Makes sure the base image of the Dockerfile exists in the docker daemon named by
# $DOCKER_HOST (or the default one) and prints its name on the last line of stdout.
#
#   scripts/docker-base-image.sh [IMAGE]      # IMAGE defaults to python:3.11-slim
#
# 1. IMAGE already in the daemon, or `docker pull IMAGE` works: use it.
# 2. Otherwise (no registry reachable, as on the project's CI machines) build a stand-in
#    from Debian bookworm with debootstrap: python3 (3.11, the same minor version as
#    python:3.11-slim), pip, venv, ca-certificates, tagged ccguard-ci/bookworm-python:3.11.
#    The root file system is cached as a tarball in $CCGUARD_CI_CACHE
#    (default /var/cache/ccguard-ci) so later runs only `docker import` it.
# Which one was used is printed ("base image: ...").
set -euo pipefail
IMAGE=${1:-python:3.11-slim}
DOCKER=${DOCKER:-docker}
CACHE=${CCGUARD_CI_CACHE:-/var/cache/ccguard-ci}
STANDIN=ccguard-ci/bookworm-python:3.11
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image: $IMAGE (already present)" >&2
  echo "$IMAGE"
  exit 0
fi
if timeout 300 "$DOCKER" pull -q "$IMAGE" >/dev/null 2>&1; then
  echo "base image: $IMAGE (pulled)" >&2
  echo "$IMAGE"
  exit 0
fi
echo "base image: $IMAGE cannot be pulled; using the debootstrap stand-in $STANDIN" >&2
if "$DOCKER" image inspect "$STANDIN" >/dev/null 2>&1; then
  echo "$STANDIN"
  exit 0
fi

tarball=$CACHE/bookworm-python3.11-rootfs.tar
mkdir -p "$CACHE"
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || {
    echo "debootstrap is missing (apt-get install debootstrap)" >&2
    exit 1
  }
  root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap bookworm into $root (a few minutes, once)" >&2
  debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,ca-certificates,passwd \
    bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
  # What python:3.11-slim offers and the Dockerfile relies on: `python`, `pip`, and a
  # pip that installs into the system interpreter (Debian marks it externally managed).
  rm -f "$root/usr/lib/python3.11/EXTERNALLY-MANAGED"
  ln -sf python3 "$root/usr/bin/python"
  ln -sf pip3 "$root/usr/bin/pip"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  chmod 0755 "$root"  # mktemp made it 0700: it becomes the image's /
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
"$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$tarball" "$STANDIN" >/dev/null
echo "$STANDIN"
