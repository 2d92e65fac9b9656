#!/usr/bin/env bash
# `make docker`: build the hwreshape image with podman (or buildah/docker via CONTAINER_CLI), no daemon needed.
#   BASE_IMAGE   empty (default): a Debian 12 root filesystem made with debootstrap, imported once as
#                localhost/hwreshape-debian:bookworm (REBUILD_BASE=1 makes it again);
#                otherwise a FINN-style build image with Python >= 3.11, e.g. BASE_IMAGE=localhost/finn:mine
#   IMAGE        tag of the result (default hwreshape:latest)
#   EXTRAS       hwreshape extras installed in the image (default stack,dev)
#   DEBIAN_MIRROR  Debian archive for debootstrap (default: the first deb.debian.org-style URI of this machine's
#                apt sources, else http://deb.debian.org/debian)
# Local wheel folders /opt/wheels and /opt/pypi (when present) are mounted into the build as pip find-links.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CLI=${CONTAINER_CLI:-podman}
command -v "$CLI" >/dev/null || { echo "make docker: $CLI not found (apt-get install podman runc debootstrap uidmap fuse-overlayfs slirp4netns)" >&2; exit 1; }
source docker/podman-args.sh
IMAGE=${IMAGE:-hwreshape:latest}
EXTRAS=${EXTRAS:-stack,dev}
DEFAULT_BASE=localhost/hwreshape-debian:bookworm
BASE_IMAGE=${BASE_IMAGE:-}
VPY=${VPY:-$REPO/.venv/bin/python}
case "$VPY" in /*) ;; *) VPY=$REPO/$VPY ;; esac
WORK=$REPO/build/docker

# 1. the wheel, from a clean copy of the checkout (tracked + untracked-not-ignored files)
rm -rf "$WORK/src" "$WORK/context"
mkdir -p "$WORK/src" "$WORK/context"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$WORK/src"
if [ ! -x "$VPY" ]; then  # no `make setup` here: a throw-away build venv with setuptools only
  "${PY:-python3.11}" -m venv "$WORK/build-venv" && "$WORK/build-venv/bin/pip" install -q "setuptools>=77" wheel
  VPY=$WORK/build-venv/bin/python
fi
(cd "$WORK/src" && "$VPY" -c "from setuptools import build_meta as b; b.build_wheel('$WORK/context')" >/dev/null)
cp constraints.txt "$WORK/context/"
ls "$WORK/context"

# 2. the base image
if [ -z "$BASE_IMAGE" ]; then
  BASE_IMAGE=$DEFAULT_BASE
  if [ "${REBUILD_BASE:-0}" = 1 ] || ! "$CLI" image exists "$BASE_IMAGE" 2>/dev/null; then
    command -v debootstrap >/dev/null || { echo "make docker: debootstrap not found (apt-get install debootstrap)" >&2; exit 1; }
    mirror=${DEBIAN_MIRROR:-$(grep -hoE '^URIs: *http[^ ]*/debian$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | sed 's/^URIs: *//')}
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$WORK/rootfs
    rm -rf "$rootfs"
    echo "== debootstrap bookworm from $mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,g++,make,ca-certificates bookworm "$rootfs" "$mirror"
    install -m 0755 docker/entrypoint.sh "$rootfs/usr/local/bin/hwreshape-entrypoint"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | "$CLI" import \
      --change 'ENTRYPOINT ["/usr/local/bin/hwreshape-entrypoint"]' --change 'CMD ["/bin/bash"]' \
      --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE"
    rm -rf "$rootfs"
  fi
fi

# 3. the image
mounts=()
wheels=""
if [ -d /opt/wheels ]; then mounts+=(-v /opt/wheels:/opt/wheels:ro); wheels=/opt/wheels; fi
# pip inside the build trusts what this machine trusts (a TLS-intercepting proxy's CA, for example); the
# bundle is mounted for the build only and is not part of the image
cert=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
certarg=""
if [ -f "$cert" ]; then mounts+=(-v "$cert:/etc/hwreshape-build-ca.crt:ro"); certarg=/etc/hwreshape-build-ca.crt; fi
echo "== $CLI build on $BASE_IMAGE -> $IMAGE (extras $EXTRAS)"
"$CLI" "${GLOBAL_ARGS[@]}" build "${BUILD_ARGS[@]}" "${RUN_ARGS[@]}" --network host "${mounts[@]}" -f docker/Dockerfile \
  --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg EXTRAS="$EXTRAS" --build-arg WHEELS="$wheels" --build-arg PIP_CERT_FILE="$certarg" \
  -t "$IMAGE" "$WORK/context"
"$CLI" image ls "$IMAGE"
