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
# Network plugins whose own libraries (libmlx5, libibverbs, libucp, libfabric, libmpi, libpmix,
# liboshmem) are not in the image, so they could never load here: NVSHMEM's multi-node
# transports and bootstraps, dlopened by distributed symmetric memory only, and cuFile's RDMA
# path. Without them every library left resolves (CI runs ldd on each).
drop "NVSHMEM network plugins, cuFile RDMA (their libraries are absent)" \
    nvidia/nvshmem/lib/nvshmem_transport_ucx.so.* nvidia/nvshmem/lib/nvshmem_transport_ibgda.so.* \
    nvidia/nvshmem/lib/nvshmem_transport_ibdevx.so.* nvidia/nvshmem/lib/nvshmem_transport_libfabric.so.* \
    nvidia/nvshmem/lib/nvshmem_bootstrap_pmix.so.* nvidia/nvshmem/lib/nvshmem_bootstrap_shmem.so.* \
    nvidia/nvshmem/lib/nvshmem_bootstrap_mpi.so.* nvidia/cufile/lib/libcufile_rdma.so.*
# The test suites of numpy and scipy, never imported.
drop "numpy and scipy test suites" $(find numpy scipy -type d -name tests -prune)

# The tools for the two steps below (binutils, a C compiler), installed and purged within this
# step: the image keeps no compiler.
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils gcc libc6-dev >/dev/null

# NCCL (multi-GPU collectives) and cuSPARSELt (2:4 structured-sparse matmul) are linked by
# libtorch_cuda.so, so the loader needs a library of each name, but inference on grand-challenge's
# one GPU calls neither. Each is replaced by a stub of the same soname that defines exactly the
# functions torch's libraries import from it (those of its own API prefix: cuSPARSELt also exports
# the libstdc++ it links statically, which must not be shadowed); a call returns its "invalid usage" /
# "not supported" status, which torch raises as an error (ncclGetVersion still answers the real
# version). The training image reinstalls the real NCCL for multi-GPU training.
stub() {
    # stub LIBRARY PREFIX ERROR_STATUS [VERSION_CODE]: replace LIBRARY by a stub of its soname
    # defining the PREFIX* functions torch imports from it.
    lib="$1"; prefix="$2"; status="$3"; version="${4:-0}"
    soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    nm -D --defined-only "$lib" | awk -v p="$prefix" '$2 ~ /^[TW]$/ && index($3, p) == 1 {print $3}' | sort -u >/tmp/stub_defined
    for f in torch/lib/*.so*; do nm -D --undefined-only "$f" | awk '{print $2}'; done | sort -u >/tmp/stub_used
    source=/tmp/stub_$soname.c
    printf '/* Stub of %s for the inference image (docker/slim_venv.sh). */\n' "$soname" >"$source"
    for name in $(comm -12 /tmp/stub_defined /tmp/stub_used); do
        case "$name" in
            *GetErrorString|*GetLastError)
                printf 'const char *%s(void) { return "%s is not in this inference image (one GPU): use the training image"; }\n' "$name" "$soname" ;;
            ncclGetVersion)
                printf 'int %s(int *v) { *v = %s; return 0; }\n' "$name" "$version" ;;
            *)
                printf 'int %s(void) { return %s; }\n' "$name" "$status" ;;
        esac
    done >>"$source"
    count=$(grep -c '^[ic]' "$source")
    [ "$count" -gt 0 ] || { echo "slim_venv: $soname: torch imports nothing from it?" >&2; exit 1; }
    bytes=$(du -sb "$lib" | cut -f 1)
    gcc -shared -fPIC -O2 -s -Wl,-soname,"$soname" -o "$lib.stub" "$source"
    mv "$lib.stub" "$lib"
    rm -f "$source" /tmp/stub_defined /tmp/stub_used
    bytes=$((bytes - $(du -sb "$lib" | cut -f 1)))
    total=$((total + bytes))
    printf 'slim_venv: %6d MB  %s replaced by a stub of the %d functions torch imports\n' $((bytes / 1000000)) "$soname" "$count"
}
nccl_version=$("$venv/bin/python" -c "from importlib.metadata import version; a, b, c = version('nvidia-nccl-cu12').split('.')[:3]; print(int(a) * 10000 + int(b) * 100 + int(c))")
stub nvidia/nccl/lib/libnccl.so.2 nccl 5 "$nccl_version"               # ncclInvalidUsage
stub nvidia/cusparselt/lib/libcusparseLt.so.0 cusparseLt 10            # CUSPARSE_STATUS_NOT_SUPPORTED

# Symbol tables of torch's libraries (for debuggers): the dynamic symbols the loader resolves
# (.dynsym) stay.
before=$(du -scb torch/lib | tail -n 1 | cut -f 1)
strip --strip-unneeded torch/lib/*.so*
bytes=$((before - $(du -scb torch/lib | tail -n 1 | cut -f 1)))
total=$((total + bytes)); printf 'slim_venv: %6d MB  %s\n' $((bytes / 1000000)) "symbol tables of torch/lib (strip --strip-unneeded)"

DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --auto-remove binutils gcc libc6-dev >/dev/null
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

printf 'slim_venv: %6d MB  removed in all; %d MB left in %s\n' $((total / 1000000)) \
    $(($(du -sb "$venv" | cut -f 1) / 1000000)) "$venv"
