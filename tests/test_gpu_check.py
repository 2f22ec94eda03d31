"""The GPU self-check's decisions, on the CPU: recorded profiler event names, the dispatch table
and the project's pins (torch from requirements.txt, cuDNN from the installed torch's metadata)."""
from __future__ import annotations

import importlib.metadata
import logging
import re

import pytest

from conftest import ROOT
from panther_seg.system import gpu_check
from panther_seg.system.gpu_check import (CUDNN, DEPTHWISE, SLOW, UNKNOWN, classify_kernels, cudnn_number,
                                          expected_dispatch, known_problems, verdict)

# Event names as torch.profiler lists them (CPU ops, then CUDA runtime calls and kernels).
# cuDNN fp16 on a T4 (sm_75), torch 2.10.0 + cuDNN 9.10.2: tensor-core implicit GEMM.
CUDNN_FP16_SM75 = [
    "aten::conv3d", "aten::convolution", "aten::_convolution", "aten::cudnn_convolution",
    "cudaStreamIsCapturing", "cudaLaunchKernel", "cudaDeviceSynchronize",
    "void cudnn::ops::nchwToNhwcKernel<__half, __half, float, false, true, (cudnnKernelDataType_t)0>(cudnn::ops::nchw2nhwc_params_t<float>, __half const*, __half*)",
    "sm75_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nchw_tilesize64x64x64_stage1_warpsize2x2x1_g1_tensor16x8x8_execute_kernel_trt",
    "void cudnn::ops::nhwcToNchwKernel<__half, __half, float, true, false, (cudnnKernelDataType_t)0>(cudnn::ops::nhwc2nchw_params_t<float>, __half const*, __half*)",
    "aten::add_", "void at::native::elementwise_kernel<128, 2, ...>(int, ...)",
]
# cuDNN fp32, older naming: the implicit-convolve engine.
CUDNN_FP32 = [
    "aten::conv3d", "aten::convolution", "aten::_convolution", "aten::cudnn_convolution", "cudaLaunchKernel",
    "void cudnn::detail::implicit_convolveNd_sgemm<float, 3, 1024, 5, 5, 3, 3, 3, 1, false, false, true>(int, int, int, float const*, int, float*, float const*, kernel_convNd_params, unsigned long long, int, float, float, int, float const*, float const*, bool)",
]
# torch 2.9.1 + cuDNN 9.10.2, fp16: the slow fallback; its GEMM is an ordinary cuBLAS (CUTLASS) kernel.
SLOW_FP16_TORCH291 = [
    "aten::conv3d", "aten::convolution", "aten::_convolution", "aten::slow_conv_dilated3d", "aten::empty",
    "aten::zeros", "cudaLaunchKernel",
    "void at::native::vol2col_kernel<c10::Half>(long, c10::Half const*, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, c10::Half*)",
    "aten::addmm", "cutlass_75_tensorop_f16_s1688gemm_f16_256x128_tn_align8",
    "turing_fp16_s1688gemm_fp16_128x128_ldg8_f2f_tn",
]
# Contiguous depthwise: torch's own kernel in every version 2.8-2.10.
DEPTHWISE_ANY = [
    "aten::conv3d", "aten::convolution", "aten::_convolution", "aten::_conv_depthwise3d", "aten::conv_depthwise3d",
    "cudaLaunchKernel",
    "void at::native::(anonymous namespace)::conv_depthwise3d_cuda_kernel<c10::Half, float, 3, 3, 3, 1, 1, 1, 1, 1, 1>(at::GenericPackedTensorAccessor<c10::Half const, 5ul, at::DefaultPtrTraits, int>, ...)",
]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)


@pytest.fixture
def logged(monkeypatch) -> Records:
    """The panther_seg logger's records, whatever handlers other tests configured on it."""
    handler = Records()
    logger = logging.getLogger("panther_seg")
    monkeypatch.setattr(logger, "handlers", [handler])
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "level", logging.INFO)
    return handler


@pytest.mark.parametrize("events, family", [
    (CUDNN_FP16_SM75, CUDNN), (CUDNN_FP32, CUDNN), (SLOW_FP16_TORCH291, SLOW), (DEPTHWISE_ANY, DEPTHWISE),
    (["aten::conv3d", "some_future_kernel_name"], UNKNOWN), ([], UNKNOWN),
])
def test_classify_kernels_names_the_family_from_recorded_event_names(events, family):
    assert classify_kernels(events) == family


def test_verdict_warns_loudly_only_for_the_slow_fallback():
    ok, line = verdict({"fp32 dilated": CUDNN, "fp16 dilated": classify_kernels(SLOW_FP16_TORCH291), "fp16 depthwise": DEPTHWISE})
    assert not ok and line.startswith("WARNING:") and "fp16 dilated" in line and "\n" not in line
    ok, line = verdict({"fp32 dilated": CUDNN, "fp16 dilated": CUDNN, "fp16 depthwise": DEPTHWISE})
    assert ok and not line.startswith("WARNING")
    ok, line = verdict({"fp16 dilated": UNKNOWN})
    assert ok and "not recognised" in line


def test_the_self_check_never_raises_and_logs_one_line_when_it_cannot_run(monkeypatch, logged):
    def broken() -> dict:
        raise RuntimeError("no CUDA here")

    monkeypatch.setattr(gpu_check, "environment", broken)
    result = gpu_check.run_self_check(("fp16",))
    assert result.error and "no CUDA here" in result.error and result.ok
    assert len(logged.records) == 1 and logged.records[0].levelno == logging.WARNING


def test_the_self_check_logs_environment_problems_and_the_warning(monkeypatch, logged):
    """torch 2.9.1 on a T4, faked: the known problems and the profiler's slow fallback both show."""
    env = {"gpu": "Tesla T4", "sm": 75, "compute_capability": "7.5", "driver": "12.2", "cuda_runtime": "12.8",
           "cudnn": 91002, "torch": "2.9.1+cu128"}
    monkeypatch.setattr(gpu_check, "environment", lambda: env)
    monkeypatch.setattr(gpu_check, "probe_events",
                        lambda dtype, probe: DEPTHWISE_ANY if probe == "depthwise" else SLOW_FP16_TORCH291 if dtype == "fp16" else CUDNN_FP32)
    result = gpu_check.run_self_check(("fp32", "fp16"))
    assert result.families == {"fp32 dilated": CUDNN, "fp32 depthwise": DEPTHWISE, "fp16 dilated": SLOW, "fp16 depthwise": DEPTHWISE}
    assert not result.ok and any(p.startswith("[slow fallback] fp16") for p in result.problems)
    warnings = [r.getMessage() for r in logged.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING:")
    assert "Tesla T4" in logged.text and "91002" in logged.text


def test_check_once_probes_each_dtype_once_per_process(monkeypatch):
    runs: list[tuple[str, ...]] = []
    monkeypatch.setattr(gpu_check, "_checked", set())
    monkeypatch.setattr(gpu_check, "run_self_check", lambda dtypes: runs.append(tuple(dtypes)))
    gpu_check.check_once(("fp32", "fp16"))
    gpu_check.check_once(("fp32", "fp16"))
    gpu_check.check_once(("fp32", "bf16"))  # training in bf16 after select_device
    assert runs == [("fp32", "fp16"), ("bf16",)]


def test_torch_291_with_its_cudnn_is_a_known_slow_fallback_for_fp16():
    problems = known_problems("2.9.1", 91002)
    assert any(p.startswith("[slow fallback] fp16") and "slow_conv_dilated3d" in p for p in problems)
    assert expected_dispatch("2.9.1+cu128", 91002, "fp16") == SLOW
    assert expected_dispatch("2.9.1", 91501, "fp16") == CUDNN  # cuDNN 9.15 lifts the guard
    assert expected_dispatch("2.10.0+cu128", 91002, "fp16") == CUDNN
    assert expected_dispatch("2.10.0", 91002, "bf16", sm=75) == SLOW and expected_dispatch("2.10.0", 91002, "bf16", sm=90) == CUDNN
    assert any(p.startswith("[wrong results] bf16") for p in known_problems("2.10.0", 91002))


def test_versions_parse_as_torch_and_cudnn_report_them():
    assert gpu_check.version_tuple("2.10.0+cu128") == (2, 10, 0) and gpu_check.version_tuple("2.9.0rc1") == (2, 9, 0)
    assert cudnn_number("9.10.2.21") == 91002 and cudnn_number("9.15.1.9") == 91501


def pinned_torch() -> str:
    pins = [m.group(1) for m in re.finditer(r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)]
    assert len(pins) == 1, "requirements.txt must pin torch once (torch==X)"
    return pins[0]


def pinned_cudnn() -> str:
    """The installed torch's cuDNN pin (every CUDA-12 wheel 2.8-2.10 pins 9.10.2.21)."""
    for requirement in importlib.metadata.requires("torch") or []:
        m = re.match(r"nvidia-cudnn-cu1\d\s*==\s*([\d.]+)", requirement)
        if m:
            return m.group(1)
    pytest.skip("the installed torch is a CPU build: its metadata pins no nvidia-cudnn-cu12")


def test_pinned_torch_and_cudnn_are_outside_every_known_broken_range():
    """fp32 and fp16 3D convs must reach cuDNN with the pinned pair, on a T4 and on sm_90.
    bf16 below sm_80 always falls back (no cuDNN bf16 there): documented, not a failure; the
    9.10.2 wrong-results entries are for bf16/TF32, which the T4 does not run."""
    torch_version, cudnn = pinned_torch(), cudnn_number(pinned_cudnn())
    slow = [p for p in known_problems(torch_version, cudnn) if re.match(r"\[slow fallback\] (fp32|fp16)\b", p)]
    assert not slow, f"torch=={torch_version} with cuDNN {cudnn}: {slow}"
    for sm in (75, 90):
        for dtype in ("fp32", "fp16"):
            assert expected_dispatch(torch_version, cudnn, dtype, sm) != SLOW


def test_training_precisions_map_to_the_dtypes_the_self_check_runs():
    assert gpu_check.dtypes_for_precision("bf16-mixed") == ("fp32", "bf16")
    assert gpu_check.dtypes_for_precision("16-mixed") == ("fp32", "fp16")
    assert gpu_check.dtypes_for_precision("32-true") == ("fp32",)


def test_select_device_runs_the_self_check_when_it_chooses_cuda_only(monkeypatch):
    import torch

    from panther_seg.system import device

    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(device, "check_once", lambda dtypes: calls.append(tuple(dtypes)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.select_device("cuda") == "cuda" and calls == [("fp32", "fp16")]
    assert device.select_device("cpu") == "cpu" and len(calls) == 1
