#!/usr/bin/env bash
# Build the image (build.sh) and run the smoke case the way grand-challenge runs a job: no
# network, read-only root file system, read-only /input, a fresh writable /output, an empty
# tmpfs /tmp, a non-root user, grand-challenge's default 8 GB of memory (/dev/shm half of it),
# model/ read-only at /opt/ml/model (grand-challenge's model tarball); a GPU only when the host
# has one. Checks that the memory budget came from the container's cgroup, then compares the
# output with test/expected_output inside the image (panther_seg.tools.smoke_check).
#   ./test.sh [extra docker build args...]
# Env: IMAGE_TAG, BASE_IMAGE (as build.sh), SKIP_BUILD=1 (test an image already built),
#      TEST_INPUT (default test/input), TEST_EXPECTED (default test/expected_output),
#      MEMORY (default 8g), SHM_SIZE (default 4g: GC's /dev/shm is half the memory).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
here=$(pwd)

IMAGE_TAG="${IMAGE_TAG:-panther-segformer3d}"
TEST_INPUT="${TEST_INPUT:-$here/test/input}"
TEST_EXPECTED="${TEST_EXPECTED:-$here/test/expected_output}"
MEMORY="${MEMORY:-8g}"
SHM_SIZE="${SHM_SIZE:-4g}"
export IMAGE_TAG

fail() { echo "test.sh: FAIL: $*"; exit 1; }

[[ -d "$TEST_INPUT/images" ]] || fail "no test input at $TEST_INPUT/images"
[[ -d "$TEST_EXPECTED" ]] || fail "no expected output at $TEST_EXPECTED"
TEST_INPUT=$(cd "$TEST_INPUT" && pwd)
TEST_EXPECTED=$(cd "$TEST_EXPECTED" && pwd)

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    ./build.sh "$@" || fail "build.sh failed"
fi

gpu_args=()
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    gpu_args=(--gpus all)
    echo "test.sh: host GPU found, running with --gpus all"
else
    echo "test.sh: no working nvidia-smi on the host, running on CPU"
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/panther-test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
chmod 755 "$scratch"
# World-readable copies of the case (the container's user, uid 1001, is not the owner of the
# checkout), and an empty /output that it can write, as on grand-challenge.
cp -R "$TEST_INPUT" "$scratch/input"
cp -R "$TEST_EXPECTED" "$scratch/expected"
cp -R "$here/model" "$scratch/model"
chmod -R a+rX "$scratch/input" "$scratch/expected" "$scratch/model"
out="$scratch/output"
mkdir "$out"
chmod 777 "$out"

echo "test.sh: running $IMAGE_TAG on $TEST_INPUT"
start=$(date +%s.%N)
set +e
docker run --rm \
    --network none \
    --read-only \
    --user 1001 \
    --memory "$MEMORY" --memory-swap "$MEMORY" \
    --shm-size "$SHM_SIZE" \
    --pids-limit 4096 \
    --tmpfs /tmp:rw,exec,size=8g \
    --volume "$scratch/input":/input:ro \
    --volume "$scratch/model":/opt/ml/model:ro \
    --volume "$out":/output:rw \
    "${gpu_args[@]}" \
    "$IMAGE_TAG" 2>&1 | tee "$scratch/run.log"
rc=${PIPESTATUS[0]}
set -e
wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
echo "test.sh: container wall time ${wall} s, exit code $rc"
[[ $rc -eq 0 ]] || fail "the container exited with $rc"

# The budget follows the container (panther_seg/system/cgroup.py): the log names the cgroup file.
budget=$(grep -o "memory limit [0-9.]* GiB (cgroup v[12] [^:]*: [0-9.]* GiB less a [0-9.]* GiB reserve" "$scratch/run.log" || true)
[[ -n "$budget" ]] || fail "the memory budget did not come from the container's cgroup (no 'memory limit ... (cgroup ...' line)"
echo "test.sh: budget from the container: $budget"

result="$out/images/pancreatic-tumor-segmentation/tumor_seg.mha"
[[ -f "$result" ]] || fail "no $result written"

# Compare inside the image: the host needs no Python packages.
docker run --rm --network none --read-only --user 1001 --tmpfs /tmp \
    --volume "$out":/check/output:ro \
    --volume "$scratch/expected":/check/expected:ro \
    --entrypoint python "$IMAGE_TAG" -m panther_seg.tools.smoke_check \
    /check/output/images/pancreatic-tumor-segmentation/tumor_seg.mha \
    /check/expected/images/pancreatic-tumor-segmentation/tumor_seg.mha \
    || fail "the output differs from the expected one"
echo "test.sh: PASS"
