#!/usr/bin/env bash
# Container tooling for tests/integration/image: Debian's podman, buildah, runc and mmdebstrap, and
# a local base image (no container registry is reachable here): a minbase bookworm root file
# system with python3, pip and venv made by mmdebstrap, cached as $OPSAGENT_CACHE/podman/base.tar
# and imported into podman's storage as localhost/opsagent-base:bookworm. The machine's CA bundle
# is copied into it so pip inside `podman build` reaches the package registry. Idempotent: the
# tarball is reused when cached, the import is skipped when the image is already in storage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/apt.sh
. "$here/../lib/apt.sh"

CACHE=${OPSAGENT_CACHE:-$HOME/.cache/opsagent}
dest="$CACHE/podman"
base_tar="$dest/base.tar"
base_image=localhost/opsagent-base:bookworm
# The host's bundle: it holds whatever CA the registries are reached through.
ca_bundle=/etc/ssl/certs/ca-certificates.crt

apt_install podman buildah runc mmdebstrap ca-certificates

mkdir -p "$dest"
if [ ! -s "$base_tar" ]; then
  echo "podman.sh: mmdebstrap bookworm minbase + python3 -> $base_tar (a few minutes, once)" >&2
  tmp=$(mktemp "$dest/.base.XXXXXX.tar")
  trap 'rm -f "$tmp"' EXIT
  mmdebstrap --quiet --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --customize-hook='mkdir -p "$1/etc/ssl/certs"' \
    --customize-hook="upload $ca_bundle /etc/ssl/certs/ca-certificates.crt" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$tmp"
  mv "$tmp" "$base_tar"
  trap - EXIT
fi

# A tarball newer than the image in storage (re-made after a CA change) is imported again.
stamp="$dest/base.imported"
if ! podman image exists "$base_image" || [ "$base_tar" -nt "$stamp" ]; then
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/usr/bin/python3"]' \
    "$base_tar" "$base_image" >/dev/null
  touch "$stamp"
fi
echo "podman: installed ($(podman --version)); base image $base_image" >&2
