#!/bin/sh
# Remove from the image's virtual environment what inference never loads, in the same RUN as the
# pip install (so the bytes leave the image, not just hide under a later layer).
#   docker/slim_venv.sh /opt/venv
# Each group is printed with the bytes it frees (the build log is the measurement). The reasons,
# and how CI proves nothing needed went (ldd on every .so, import torch, cuDNN's version, the GPU
# self-check, the benchmark, the smoke test): docs/docker.md, "What the image leaves out".
set -eu
venv="$1"
site=$(echo "$venv"/lib/python3*/site-packages)
[ -d "$site/torch" ] || { echo "slim_venv: no torch under $site" >&2; exit 1; }
cd "$site"
total=0

drop() {
    # drop GROUP PATH...: remove the paths that exist, print what they held.
    group="$1"; shift
    existing=""
    for p in "$@"; do [ -e "$p" ] && existing="$existing $p"; done
    [ -n "$existing" ] || { echo "slim_venv: $group: nothing to remove" >&2; exit 1; }
    # shellcheck disable=SC2086
    bytes=$(du -scb $existing | tail -n 1 | cut -f 1)
    # shellcheck disable=SC2086
    rm -rf $existing
    total=$((total + bytes))
    printf 'slim_venv: %6d MB  %s\n' $((bytes / 1000000)) "$group"
}

# torch.compile's GPU code generator: inference runs eagerly, `import torch` never imports it, and
# it could not run here anyway (it builds its launchers with a C compiler, which the image lacks).
# Uninstalled with its metadata, so that pip reinstalls it where training adds packages on top.
bytes=$(du -scb triton triton-*.dist-info | tail -n 1 | cut -f 1)
"$venv/bin/python" -m pip uninstall -y -q triton
total=$((total + bytes)); printf 'slim_venv: %6d MB  %s\n' $((bytes / 1000000)) "triton (torch.compile only)"

# CUDA linear algebra: torch dlopens libtorch_cuda_linalg.so (the only library that needs
# cuSOLVER) on the first torch.linalg call on a CUDA tensor; inference makes none.
drop "cuSOLVER and torch's CUDA linear algebra (lazy-loaded, never called)" \
    nvidia/cusolver/lib torch/lib/libtorch_cuda_linalg.so
# cuDNN's "adv" sub-library: RNNs, the legacy multi-head attention and CTC loss. cuDNN 9's
# libcudnn.so loads a sub-library on the first call into it; convolutions use cnn/ops/graph and
# the engines, attention runs in torch's own SDPA kernels.
drop "cuDNN adv sub-library (RNN, legacy attention, CTC)" nvidia/cudnn/lib/libcudnn_adv.so.9
# NVRTC's .alt build, for programs linked against the static CUDA runtime; torch and cuDNN load
# libnvrtc.so.12.
drop "NVRTC .alt variants" nvidia/cuda_nvrtc/lib/libnvrtc.alt.so.* nvidia/cuda_nvrtc/lib/libnvrtc-builtins.alt.so.*
# Build-time only: headers, static libraries, device bitcode, Cython sources, protoc. The image
# holds no compiler to use them.
drop "headers, static libraries, bitcode, Cython sources, protoc" \
    torch/include nvidia/*/include nvidia/nvshmem/lib/libnvshmem_device.a nvidia/nvshmem/lib/libnvshmem_device.bc \
    $(find cuda -name '*.pyx' -o -name '*.pxd' -o -name '*.cpp') torch/bin/protoc torch/bin/protoc-*
# CUPTI's profiler-only companions (range profiler, PC sampling, checkpointing); libcupti.so,
# which libtorch_cpu.so links, stays.
drop "CUPTI profiler companions" nvidia/cuda_cupti/lib/libnvperf_host.so nvidia/cuda_cupti/lib/libnvperf_target.so \
    nvidia/cuda_cupti/lib/libpcsamplingutil.so nvidia/cuda_cupti/lib/libcheckpoint.so
# The test suites of numpy and scipy, never imported.
drop "numpy and scipy test suites" $(find numpy scipy -type d -name tests -prune)

# Symbol tables of torch's libraries (for debuggers): the dynamic symbols the loader resolves
# (.dynsym) stay. binutils is installed and purged within this step.
before=$(du -scb torch/lib | tail -n 1 | cut -f 1)
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >/dev/null
strip --strip-unneeded torch/lib/*.so*
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --auto-remove binutils >/dev/null
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
bytes=$((before - $(du -scb torch/lib | tail -n 1 | cut -f 1)))
total=$((total + bytes)); printf 'slim_venv: %6d MB  %s\n' $((bytes / 1000000)) "symbol tables of torch/lib (strip --strip-unneeded)"

printf 'slim_venv: %6d MB  removed in all; %d MB left in %s\n' $((total / 1000000)) \
    $(($(du -sb "$venv" | cut -f 1) / 1000000)) "$venv"
