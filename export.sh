#!/usr/bin/env bash
# Save the inference image for upload to grand-challenge.org.
#   ./export.sh [--model-tarball] [--output-dir DIR]
# Writes panther-segformer3d_YYYY-MM-DD.tar.gz (docker save | gzip); with --model-tarball also
# model_YYYY-MM-DD.tar.gz holding the content of model/ (its README aside) at the top level:
# grand-challenge extracts an algorithm's model tarball to /opt/ml/model/ (model/README.md).
# Env: IMAGE_TAG (default panther-segformer3d).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

IMAGE_TAG="${IMAGE_TAG:-panther-segformer3d}"
model_tarball=0
outdir=.
while [[ $# -gt 0 ]]; do
    case "$1" in
        --model-tarball) model_tarball=1 ;;
        --output-dir) outdir="$2"; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "export.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$outdir"
day=$(date +%Y-%m-%d)

docker image inspect "$IMAGE_TAG" >/dev/null 2>&1 || {
    echo "export.sh: no image $IMAGE_TAG; run ./build.sh first" >&2
    exit 1
}
image_out="$outdir/${IMAGE_TAG##*/}_$day.tar.gz"
image_out="${image_out//:/_}"
echo "export.sh: saving $IMAGE_TAG to $image_out"
docker save "$IMAGE_TAG" | gzip -c >"$image_out.partial"
mv "$image_out.partial" "$image_out"
ls -lh "$image_out"

if [[ $model_tarball == 1 ]]; then
    shopt -s nullglob
    files=()
    checkpoints=0
    for f in model/*; do
        [[ -f "$f" && "$(basename "$f")" != README.md ]] || continue
        files+=("${f#model/}")
        case "$f" in *.pt|*.pth|*.ckpt) checkpoints=$((checkpoints + 1)) ;; esac
    done
    if [[ $checkpoints -eq 0 ]]; then
        echo "export.sh: no checkpoint (.pt, .pth, .ckpt) in model/: put the weights there first (model/README.md)" >&2
        exit 1
    fi
    model_out="$outdir/model_$day.tar.gz"
    echo "export.sh: writing $model_out with ${files[*]}"
    tar -C model --owner=0 --group=0 --numeric-owner -czf "$model_out" "${files[@]}"
    ls -lh "$model_out"
fi
