#!/usr/bin/env bash
# Make a Debian bookworm base image for the Dockerfile's BASE_IMAGE from Debian's package archive
# alone, for machines that cannot reach Docker Hub (python:3.11-slim-bookworm is the public
# default). The image has python3 (3.11) with venv support and ca-certificates, plus this host's
# CA bundle, so that pip inside `docker build` trusts the same TLS proxies as the host does.
#
#   docker/make_base_image.sh [TAG]      (default TAG: panther-base:bookworm)
#
# Cached: does nothing when TAG already exists (FORCE=1 remakes it). Needs root and a running
# Docker engine (docker/docker_engine.sh start). Env: DEBIAN_MIRROR (default: the host's first
# deb.debian.org-style URI, else http://deb.debian.org/debian), HOST_CA_BUNDLE.
set -euo pipefail

TAG="${1:-panther-base:bookworm}"
SUITE=bookworm
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "make_base_image: $TAG exists, reusing it (FORCE=1 to remake)"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "make_base_image: debootstrap needs root" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "make_base_image: installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

if [[ -z "${DEBIAN_MIRROR:-}" ]]; then
    DEBIAN_MIRROR=$(grep -hoE '^(URIs:|deb) +[^ ]*https?://[^ ]+/debian/?( |$)' \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -oE 'https?://[^ ]+' | head -n1 || true)
    DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
fi

work=$(mktemp -d /var/tmp/panther-base.XXXXXX)
cleanup() {
    # debootstrap may leave /proc or /sys mounted inside the root file system on failure.
    for m in proc sys dev/pts dev; do
        mountpoint -q "$work/rootfs/$m" 2>/dev/null && umount -l "$work/rootfs/$m" || true
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "make_base_image: debootstrap $SUITE (minbase) from $DEBIAN_MIRROR"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$work/rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    echo "make_base_image: debootstrap failed" >&2
    exit 1
}

root="$work/rootfs"
# Security updates, as on the official images.
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $SUITE main
deb $DEBIAN_MIRROR $SUITE-updates main
deb ${DEBIAN_MIRROR%/debian*}/debian-security $SUITE-security main
SOURCES
# The host's CA bundle (it may hold the CA of a TLS proxy between this host and PyPI).
if [[ -f "$HOST_CA_BUNDLE" ]]; then
    cp "$HOST_CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
fi
# Slim it down: package caches, lists, docs, man pages, locales.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
# /etc/hostname, /etc/resolv.conf: Docker provides them at run time.
: >"$root/etc/resolv.conf"
rm -f "$root/etc/hostname"

echo "make_base_image: importing as $TAG"
tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$TAG" >/dev/null
docker image inspect -f "make_base_image: {{.Id}} ({{.Size}} bytes)" "$TAG"
