#!/usr/bin/env bash
# Build the inference image.
#   ./build.sh [extra docker build args...]
# Env: IMAGE_TAG (default panther-segformer3d), BASE_IMAGE (passed through as a build arg when
# set; see docker/make_base_image.sh for a base made without Docker Hub).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

IMAGE_TAG="${IMAGE_TAG:-panther-segformer3d}"
args=(--file Dockerfile)
if [[ -n "${BASE_IMAGE:-}" ]]; then
    args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
fi

for f in process.py model panther_seg resources requirements.txt; do
    if [[ ! -e "$f" ]]; then
        echo "build.sh: $f is missing from $(pwd)" >&2
        exit 1
    fi
done

echo "build.sh: building $IMAGE_TAG${BASE_IMAGE:+ from $BASE_IMAGE}"
start=$(date +%s)
docker build "${args[@]}" --tag "$IMAGE_TAG" "$@" .
echo "build.sh: built $IMAGE_TAG in $(( $(date +%s) - start )) s"
