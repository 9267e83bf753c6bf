#!/usr/bin/env bash
# Build a CPU base image for the Dockerfile without Docker Hub: Debian bookworm from debootstrap, Python 3.11
# and the CPU build of torch 2.13.0 (the release CI tests). CI and offline machines use it in place of the
# pytorch/pytorch CUDA image:
#
#   docker/build-cpu-base.sh                      # prints the image's name: volunteer-cpu-base:bookworm-torch2.13.0
#   docker build -t volunteer --network host --build-arg BASE_IMAGE=volunteer-cpu-base:bookworm-torch2.13.0 .
#
# Idempotent: an image built from this same script is reused (the script's hash is in its label). Needs root,
# debootstrap, pip and a running Docker engine; the Debian mirror and PyPI must be reachable. The machine's CA
# bundle goes into the image, so registries behind a TLS-inspecting proxy work inside the build as they do here.
# Each step is bounded by a timeout; VOLUNTEER_BASE_TIMEOUT (seconds, default 600) bounds debootstrap.
set -euo pipefail

IMAGE="${1:-volunteer-cpu-base:bookworm-torch2.13.0}"
TORCH="torch==2.13.0"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
STEP_TIMEOUT="${VOLUNTEER_BASE_TIMEOUT:-600}"
recipe="$(sha256sum "$0" | cut -c1-16)"

if [ "$(docker image inspect --format '{{index .Config.Labels "volunteer.base.recipe"}}' "$IMAGE" 2>/dev/null)" = "$recipe" ]; then
    echo "$IMAGE"
    exit 0
fi

work="$(mktemp -d /tmp/volunteer-cpu-base.XXXXXX)"
cleanup() {
    rm -rf "$work"
    docker image rm "$IMAGE-rootfs" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "building $IMAGE in $work" >&2
timeout "$STEP_TIMEOUT" debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
    bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log" >&2
    echo "error: debootstrap failed (log above)" >&2
    exit 1
}
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
timeout 300 tar -C "$work/rootfs" -c . | timeout 300 docker import - "$IMAGE-rootfs" >/dev/null
rm -rf "$work/rootfs"

mkdir -p "$work/context/wheels"
cp "$CA_BUNDLE" "$work/context/ca-certificates.crt"
timeout 600 python3 -m pip download --quiet --dest "$work/context/wheels" "$TORCH" >"$work/pip.log" 2>&1 || {
    grep -v "^WARNING: Location" "$work/pip.log" | tail -n 20 >&2
    echo "error: pip download $TORCH failed (log above)" >&2
    exit 1
}
cat >"$work/context/Dockerfile" <<EOF
FROM $IMAGE-rootfs
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY wheels /tmp/wheels
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir --no-index --find-links /tmp/wheels "$TORCH" \\
    && rm -rf /tmp/wheels
ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL volunteer.base.recipe="$recipe"
CMD ["/bin/bash"]
EOF
DOCKER_BUILDKIT=0 timeout 600 docker build --quiet -t "$IMAGE" "$work/context" >/dev/null 2>"$work/build.log" || {
    tail -n 20 "$work/build.log" >&2
    echo "error: docker build of $IMAGE failed (log above)" >&2
    exit 1
}
echo "$IMAGE"
