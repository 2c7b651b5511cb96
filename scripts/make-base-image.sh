#!/usr/bin/env bash
# Makes a local stand-in for python:3.12-slim on a machine that cannot pull images:
# a debootstrapped Debian bookworm (minbase) plus Debian's python3, tagged $TAG.
# The result is cached as a `docker save` tarball in $CACHE, so later runs only load it.
# Needs DOCKER_HOST pointing at a running engine; run as root (debootstrap).
set -euo pipefail
TAG=${TAG:-local/python:3.12-slim}
CACHE=${FOUR11_CI_CACHE:-/var/cache/four11-ci}
DOCKER=${DOCKER:-docker}
img_tar=$CACHE/base-python-bookworm.tar
mkdir -p "$CACHE"

if $DOCKER image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG present"; exit 0
fi
if [ -s "$img_tar" ]; then
    $DOCKER load -q -i "$img_tar"
    $DOCKER image inspect "$TAG" >/dev/null && { echo "base image $TAG loaded from $img_tar"; exit 0; }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs_tar=$CACHE/debian-bookworm-minbase.tar
if [ ! -s "$rootfs_tar" ]; then
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; echo "make-base-image: debootstrap failed" >&2; exit 1; }
    tar -C "$work/rootfs" -cf "$rootfs_tar.part" . && mv "$rootfs_tar.part" "$rootfs_tar"
    rm -rf "$work/rootfs"
fi
$DOCKER import - local/debian:bookworm <"$rootfs_tar" >/dev/null

# Builds reach the registries through a proxy whose CA the host trusts: carry that CA
# into the stand-in only, so the project's Dockerfiles stay what users build.
ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
mkdir -p "$work/ctx"
cp "$ca" "$work/ctx/host-ca.crt"
cat >"$work/ctx/Dockerfile" <<'DOCKERFILE'
FROM local/debian:bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/bin/python3 /usr/local/bin/python
COPY host-ca.crt /etc/ssl/certs/host-ca.crt
ENV PIP_CERT=/etc/ssl/certs/host-ca.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 LANG=C.UTF-8
CMD ["python3"]
DOCKERFILE
DOCKER_BUILDKIT=0 $DOCKER build -q -t "$TAG" "$work/ctx" >/dev/null
$DOCKER save -o "$img_tar.part" "$TAG" && mv "$img_tar.part" "$img_tar"
echo "base image $TAG built and cached in $img_tar"
