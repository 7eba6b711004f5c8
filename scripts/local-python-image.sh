#!/usr/bin/env bash
# Makes a local stand-in for `python:3.11-slim` when no container registry can be reached:
# a minimal Debian bookworm root file system (debootstrap, from the Debian mirror apt uses)
# with Debian's Python 3.11 and venv and the host's CA certificates, imported as a Docker
# image. Prints the image name.
#     scripts/local-python-image.sh            # -> nicepay-cvs-python:3.11-bookworm
# Needs root, debootstrap and a running Docker daemon. Re-uses the image when it exists.
set -euo pipefail

IMAGE=${1:-nicepay-cvs-python:3.11-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is needed (apt-get install debootstrap)" >&2; exit 1; }

rootfs=$(mktemp -d /tmp/python-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "== building $IMAGE with debootstrap (a few minutes, once)" >&2
# python-is-python3: the official image's `python` command; ca-certificates: HTTPS to PyPI.
debootstrap --variant=minbase \
  --include=python3,python3-venv,python-is-python3,ca-certificates \
  bookworm "$rootfs" "$MIRROR" >&2
# The host's trust store: where HTTPS leaves through an intercepting proxy, its CA is in
# there, and pip and uv in the build need it to reach PyPI.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
# What an image does not need: package lists, caches, docs.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
tar -C "$rootfs" --numeric-owner -c . \
  | docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      --change 'CMD ["python3"]' \
      - "$IMAGE" >&2
echo "$IMAGE"
