"""GPU self-check: which kernel family really runs this network's kind of 3D convolution.

torch 2.9.x with cuDNN 9.8-9.14 silently sends fp16/bf16 3D convolutions (kernel != 1, contiguous
layout) to ``slow_conv_dilated3d`` (vol2col + GEMM): 4-20x slower and several times the memory,
with no error (pytorch/pytorch#166122, #166643, #174051; docs/docker.md). Nothing in the
outputs shows it, so whenever CUDA is used this module runs a few small convolutions under the
profiler, names the kernel family from the event names, and logs one loud line when the slow
fallback ran. It never fails a case: any error is logged in one line and ignored.

``classify_kernels``, ``verdict``, ``expected_dispatch`` and ``known_problems`` are pure, so the
decisions are tested on the CPU with recorded event names.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any, Iterable, Mapping, Sequence

log = logging.getLogger("panther_seg")

CUDNN = "cudnn"
DEPTHWISE = "depthwise native"
SLOW = "slow fallback"
UNKNOWN = "unknown"

# Substrings of profiler event names (CPU ops and CUDA kernels), lower case. The slow fallback's
# GEMM runs in cuBLAS kernels whose names may contain "cutlass" or "gemm", so it is recognised
# first, by its own ops and its vol2col/im2col kernels.
SLOW_MARKERS = ("slow_conv_dilated3d", "slow_conv3d", "vol2col", "im2col", "col2vol", "slow_conv_dilated2d")
DEPTHWISE_MARKERS = ("conv_depthwise3d",)
CUDNN_MARKERS = (
    "cudnn",                # aten::cudnn_convolution; cudnn::detail::implicit_convolve_sgemm<...>
    "xmma_",                # sm75_xmma_fprop_implicit_gemm_f16f16_..., sm80_xmma_fprop_...
    "implicit_convolve",    # cudnn::detail::implicit_convolve_sgemm / implicit_convolveNd_hhgemm
    "implicit_gemm",
    "scudnn",               # volta_scudnn_128x128_..., maxwell_scudnn_winograd_...
    "fprop",                # cuDNN's forward-propagation engines
    "cutlass",              # cuDNN 9 runtime-fused engines built on CUTLASS
)

# (torch from, torch until (excl.), cuDNN from, cuDNN until (excl.), dtype, sm from, sm until (excl.), family, why)
# Verified by running each wheel's own backend selection (docs/docker.md, "The torch and cuDNN stack") unless marked.
KNOWN_DISPATCH: tuple[tuple[str, str, int, int, str, int, int, str, str], ...] = (
    ("2.9.0", "2.10.0", 90800, 91500, "fp16", 0, 999, SLOW,
     "torch 2.9 disables cuDNN for contiguous fp16/bf16 3D convs with kernel != 1 on cuDNN 9.8-9.14 "
     "(PR #163581/#166480): slow_conv_dilated3d (probed on 2.9.1; 2.9.0 unverified, may be stricter)"),
    ("2.9.0", "2.10.0", 90800, 91500, "bf16", 0, 999, SLOW,
     "torch 2.9 disables cuDNN for contiguous fp16/bf16 3D convs with kernel != 1 on cuDNN 9.8-9.14 "
     "(PR #163581/#166480): slow_conv_dilated3d"),
    ("2.0.0", "99.0.0", 0, 10**6, "bf16", 0, 80, SLOW,
     "no cuDNN bf16 convolution below sm_80 (supportsBFloat16ConvolutionWithCuDNNv8): bf16 3D convs "
     "with kernel != 1 run slow_conv_dilated3d on a T4; use fp16 there"),
    ("2.9.0", "2.10.0", 91500, 10**6, "fp16", 0, 999, CUDNN, "the 2.9 guard ends at cuDNN 9.15 (probed with 9.15.1, pip check fails)"),
    ("2.8.0", "2.9.0", 0, 10**6, "fp16", 0, 999, CUDNN, "no cuDNN-version guard for 3D convs in 2.8 (probed with 9.10.2)"),
    ("2.10.0", "2.11.0", 0, 10**6, "fp16", 0, 999, CUDNN, "no cuDNN-version guard for 3D convs in 2.10 (probed with 9.10.2, 9.14)"),
    ("2.8.0", "2.9.0", 0, 10**6, "bf16", 80, 999, CUDNN, "cuDNN bf16 from sm_80 (probed on sm_90)"),
    ("2.10.0", "2.11.0", 0, 10**6, "bf16", 80, 999, CUDNN, "cuDNN bf16 from sm_80 (probed on sm_90)"),
    ("2.8.0", "2.11.0", 0, 10**6, "fp32", 0, 999, CUDNN, "fp32 dense, dilated and 1x1x1 3D convs go to cuDNN in 2.8-2.10"),
)

# Known wrong results (not slowness): (torch from, until, cuDNN from, until, dtypes, why)
KNOWN_WRONG_RESULTS: tuple[tuple[str, str, int, int, tuple[str, ...], str], ...] = (
    ("2.0.0", "99.0.0", 91002, 91600, ("bf16",),
     "cuDNN 9.10.2-9.15 has a kernel that silently gives wrong bf16 3D-conv results on some large inputs "
     "(pytorch issue #163539, 'issue is from cudnn 9.10.2'); fp16 on sm_75 not verified either way"),
    ("2.0.0", "99.0.0", 91002, 91600, ("tf32",),
     "cuDNN 9.10.2-9.15 has a broken TF32 3D-conv kernel (PR #167024 disables TF32 for 3D convs); "
     "irrelevant on a T4 (no TF32), may slow fp32 on sm_80+"),
)


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.10.0+cu128' -> (2, 10, 0): the local build tag and pre-release parts do not matter here."""
    numbers = [int("".join(takewhile(str.isdigit, part)) or 0) for part in version.split("+")[0].split(".")[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))


def cudnn_number(version: str) -> int:
    """'9.10.2.21' (a wheel's pin) -> 91002, as ``torch.backends.cudnn.version()`` reports cuDNN 9."""
    major, minor, patch = (version_tuple(version) + (0, 0, 0))[:3]
    return major * 10000 + minor * 100 + patch


def _in(torch_version: str, lo: str, hi: str) -> bool:
    return version_tuple(lo) <= version_tuple(torch_version) < version_tuple(hi)


def expected_dispatch(torch_version: str, cudnn_version: int, dtype: str, sm: int = 75) -> str:
    """What KNOWN_DISPATCH says a contiguous 3D conv with kernel != 1 runs: a slow-fallback entry
    wins over a cuDNN one; ``unknown`` where no entry covers the combination."""
    found = [family for t_lo, t_hi, c_lo, c_hi, d, s_lo, s_hi, family, _ in KNOWN_DISPATCH
             if d == dtype and _in(torch_version, t_lo, t_hi) and c_lo <= cudnn_version < c_hi and s_lo <= sm < s_hi]
    return SLOW if SLOW in found else (found[0] if found else UNKNOWN)


def known_problems(torch_version: str, cudnn_version: int, sm: int | None = None) -> list[str]:
    """Every table entry that applies to this torch and cuDNN (on every sm when ``sm`` is None).
    Slow-fallback lines start with '[slow fallback] <dtype>:', wrong-result lines with
    '[wrong results] <dtype>:', so callers can filter by kind and dtype."""
    problems = []
    for t_lo, t_hi, c_lo, c_hi, dtype, s_lo, s_hi, family, why in KNOWN_DISPATCH:
        if family == SLOW and _in(torch_version, t_lo, t_hi) and c_lo <= cudnn_version < c_hi and (sm is None or s_lo <= sm < s_hi):
            where = "" if (s_lo, s_hi) == (0, 999) else f" (sm_{s_lo}..sm_{s_hi - 1})" if sm is None else f" (sm_{sm})"
            problems.append(f"[slow fallback] {dtype}{where}: {why}")
    for t_lo, t_hi, c_lo, c_hi, dtypes, why in KNOWN_WRONG_RESULTS:
        if _in(torch_version, t_lo, t_hi) and c_lo <= cudnn_version < c_hi:
            problems.extend(f"[wrong results] {dtype}: {why}" for dtype in dtypes)
    return problems


def classify_kernels(event_names: Iterable[str]) -> str:
    """The kernel family one convolution ran, from the profiler's event names (CPU ops and CUDA
    kernels together). The slow fallback is checked first: its GEMM kernels look like anyone's."""
    names = [n.lower() for n in event_names]
    if any(m in n for n in names for m in SLOW_MARKERS):
        return SLOW
    if any(m in n for n in names for m in DEPTHWISE_MARKERS):
        return DEPTHWISE
    if any(m in n for n in names for m in CUDNN_MARKERS):
        return CUDNN
    return UNKNOWN


def verdict(families: Mapping[str, str]) -> tuple[bool, str]:
    """(ok, one line) for the probes' families, e.g. {'fp16 dilated': 'cudnn', 'fp16 depthwise':
    'depthwise native'}. Not ok only when a slow fallback ran; an unknown family is reported but
    not alarming (a future cuDNN may name its kernels differently)."""
    slow = [probe for probe, family in families.items() if family == SLOW]
    summary = ", ".join(f"{probe}: {family}" for probe, family in families.items())
    if slow:
        return False, (f"WARNING: 3D convolutions run torch's slow fallback (slow_conv_dilated3d/vol2col) for "
                       f"{', '.join(slow)}: expect several times the time and GPU memory; use a torch/cuDNN pair "
                       f"outside the known-broken range (see panther_seg.system.gpu_check) [{summary}]")
    unknown = [probe for probe, family in families.items() if family == UNKNOWN]
    note = f" (kernel family not recognised for {', '.join(unknown)})" if unknown else ""
    return True, f"GPU self-check: 3D convolutions on fast kernels{note} [{summary}]"


@dataclass
class SelfCheck:
    """What the self-check found; ``as_dict`` goes into the benchmark's report."""
    info: dict[str, Any] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    ok: bool = True
    message: str = ""
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"info": self.info, "families": self.families, "known_problems": self.problems,
                "ok": self.ok, "message": self.message, "error": self.error}


def environment() -> dict[str, Any]:
    """GPU, compute capability, driver, CUDA runtime, cuDNN and torch: what decides the dispatch."""
    import torch

    p = torch.cuda.get_device_properties(0)
    driver = None
    try:
        import ctypes

        version = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) == 0:
            driver = f"{version.value // 1000}.{version.value % 1000 // 10} (CUDA API)"
    except OSError:
        pass
    return {"gpu": p.name, "sm": p.major * 10 + p.minor, "compute_capability": f"{p.major}.{p.minor}",
            "memory_gib": round(p.total_memory / 2**30, 1), "driver": driver, "cuda_runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "cudnn_enabled": torch.backends.cudnn.enabled, "torch": torch.__version__}


PROBES = {  # name: (Conv3d keyword arguments); input 1 x 16 x 16 x 32 x 32, contiguous, as the network runs
    "dilated": dict(in_channels=16, out_channels=16, kernel_size=3, dilation=2, padding=2),
    "depthwise": dict(in_channels=16, out_channels=16, kernel_size=3, padding=1, groups=16),
}


def probe_events(dtype_name: str, probe: str) -> list[str]:
    """Event names of one small Conv3d forward on the GPU under the profiler (after a warm-up
    outside it, so cuDNN's autotuning does not show up as the kernel that ran)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    conv = torch.nn.Conv3d(**PROBES[probe]).to("cuda", dtype)
    x = torch.randn(1, 16, 16, 32, 32, device="cuda", dtype=dtype)
    with torch.inference_mode():
        conv(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            conv(x)
            torch.cuda.synchronize()
    return [e.name for e in prof.events()]


def run_self_check(dtypes: Sequence[str] = ("fp32", "fp16")) -> SelfCheck:
    """Probe every conv kind in every dtype, log the environment, known problems and the verdict.
    Never raises: a failure is one logged line and ``error`` in the result."""
    result = SelfCheck()
    try:
        result.info = environment()
        log.info("GPU self-check: %s", ", ".join(f"{k} {v}" for k, v in result.info.items()))
        result.problems = known_problems(result.info["torch"], result.info["cudnn"] or 0, result.info["sm"])
        for problem in result.problems:
            log.info("  known problem for this torch/cuDNN: %s", problem)
        for dtype in dtypes:
            for probe in PROBES:
                result.families[f"{dtype} {probe}"] = classify_kernels(probe_events(dtype, probe))
        result.ok, result.message = verdict(result.families)
        (log.info if result.ok else log.warning)("%s", result.message)
    except Exception as e:  # noqa: BLE001 - a self-check must never cost a case
        result.error = f"{type(e).__name__}: {e}"
        log.warning("GPU self-check could not run (%s); continuing", result.error)
    return result


def dtypes_for_precision(precision: str) -> tuple[str, ...]:
    """Lightning's precision string -> the dtypes its convolutions run in (fp32 always: the
    optimiser's master weights and any op autocast keeps in fp32)."""
    if precision.startswith("bf16"):
        return ("fp32", "bf16")
    if precision.startswith("16"):
        return ("fp32", "fp16")
    return ("fp32",)


_checked: set[str] = set()


def check_once(dtypes: Sequence[str] = ("fp32", "fp16")) -> SelfCheck | None:
    """The self-check for the dtypes this process has not probed yet (None when all were):
    ``select_device`` asks for fp32/fp16, training adds bf16 when it trains in bf16."""
    todo = [d for d in dtypes if d not in _checked]
    if not todo:
        return None
    _checked.update(todo)
    return run_self_check(todo)
