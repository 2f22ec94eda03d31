"""GPU inference that keeps the GPU busy and gives the same numbers: the importance map computed
once per case, the batch size from free GPU memory, the stitching on another device, the window
count and the progress lines. Everything here runs on the CPU with small networks."""
from __future__ import annotations

import logging

import monai.inferers.utils
import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from conftest import small_model
from panther_seg.config import GAUSSIAN_SIGMA_SCALE
from panther_seg.inference import batching, sliding_window
from panther_seg.inference.batching import MAX_GPU_BATCH, RESERVE_BYTES, NetworkWidths, gpu_batch_size, window_bytes
from panther_seg.inference.sliding_window import InferenceSettings, flip, mirror_sets, predict_logits, window_count
from test_sliding_window import ConvNet

GiB = 2**30


def monai_per_mirroring(net, volume: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    """The computation as it was: MONAI builds its own importance map in every mirroring's call."""
    x = volume[None, None]
    flips = mirror_sets(settings.mirror_axes)
    total = None
    for axes in flips:
        out = flip(sliding_window_inference(flip(x, axes), settings.window, settings.batch_size, net.predict,
                                            overlap=settings.overlap, mode="gaussian", sigma_scale=GAUSSIAN_SIGMA_SCALE,
                                            padding_mode="constant", cval=0.0), axes)
        total = out if total is None else total + out
    return total[0] / len(flips)


@pytest.mark.parametrize("shape", [(40, 44, 52), (9, 30, 41)])
def test_the_importance_map_is_computed_once_per_case_and_the_logits_are_identical(monkeypatch, shape):
    volume = torch.from_numpy(np.random.default_rng(3).normal(size=shape).astype(np.float32))
    settings = InferenceSettings(window=(16, 16, 24), batch_size=2)
    net = ConvNet(7)
    before = monai_per_mirroring(net, volume, settings)
    calls = []
    for module in (sliding_window, monai.inferers.utils):
        real = module.compute_importance_map
        monkeypatch.setattr(module, "compute_importance_map", lambda *a, _real=real, **k: (calls.append(a), _real(*a, **k))[1])
    ours = predict_logits([net], volume, settings)[0]
    assert len(calls) == 1  # not once per mirroring (8)
    assert torch.equal(ours, before)


def test_stitching_on_another_device_gives_the_same_logits():
    """The out-of-memory fallback's placement (network on ``device``, logits on ``stitch_device``)
    changes nothing but where the buffers live."""
    volume = torch.from_numpy(np.random.default_rng(4).normal(size=(20, 40, 40)).astype(np.float32))
    settings = InferenceSettings(window=(32, 32, 32), mirror_axes=(2,))
    model = small_model(1)
    same = predict_logits(model, volume, settings)[0]
    host = predict_logits(model, volume, InferenceSettings(window=(32, 32, 32), mirror_axes=(2,), stitch_device="cpu"))[0]
    torch.testing.assert_close(host, same, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape, window, overlap", [((40, 44, 52), (16, 16, 24), 0.5), ((9, 30, 41), (16, 16, 24), 0.5),
                                                    ((16, 16, 24), (16, 16, 24), 0.5), ((72, 300, 400), (32, 160, 208), 0.25)])
def test_window_count_is_the_number_of_windows_monai_runs(shape, window, overlap):
    seen = []

    def predictor(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return x.new_zeros((x.shape[0], 1, *x.shape[2:]))

    sliding_window_inference(torch.zeros(1, 1, *shape), window, 3, predictor, overlap=overlap)
    assert window_count(shape, window, overlap) == sum(seen)


def test_progress_without_a_terminal_is_one_log_line_per_mirroring(caplog):
    volume = torch.from_numpy(np.random.default_rng(5).normal(size=(40, 44, 52)).astype(np.float32))
    settings = InferenceSettings(window=(16, 16, 24), mirror_axes=(0, 1), progress=None)
    windows = window_count(volume.shape, settings.window, settings.overlap)
    with caplog.at_level(logging.INFO, logger="panther_seg"):
        predict_logits([ConvNet()], volume, settings)
    lines = [r.getMessage() for r in caplog.records if "mirroring" in r.getMessage()]
    assert lines == [f"  mirroring {i}/4 done ({i * windows}/{4 * windows} windows)" for i in range(1, 5)]


def test_widths_are_read_from_the_network():
    assert NetworkWidths.of(small_model()) == NetworkWidths(stem=4, stage1=8, hidden1=32, decoder=16, classes=3)
    assert NetworkWidths.of(ConvNet()) == NetworkWidths(16, 32, 128, 128, 3)  # not a SegFormer3D: the default network's


def test_the_panther_window_is_estimated_at_about_0_7_gb():
    assert 0.6e9 < window_bytes((32, 160, 208), NetworkWidths(16, 32, 128, 128, 3)) < 0.8e9


def test_gpu_batch_size_from_free_memory():
    widths = NetworkWidths(16, 32, 128, 128, 3)
    window = (32, 160, 208)
    per_window = window_bytes(window, widths) + 4 * 32 * 160 * 208 * 3  # one member's activations and its logits
    assert gpu_batch_size(80 * GiB, window, 1, widths) == MAX_GPU_BATCH  # capped
    assert gpu_batch_size(RESERVE_BYTES + 3 * per_window + 10, window, 1, widths) == 3
    assert gpu_batch_size(RESERVE_BYTES + 3 * per_window + 10, window, 1, widths, stitch_bytes=per_window) == 2
    assert gpu_batch_size(GiB // 4, window, 1, widths) == 1  # never 0: the out-of-memory fallbacks take over
    assert gpu_batch_size(RESERVE_BYTES + 3 * per_window + 10, window, 3, widths) == 2  # three members' logits per window
    assert gpu_batch_size(80 * GiB, window, 1, widths, cap=2) == 2


def test_no_batch_size_means_the_free_memory_decides_on_a_gpu(monkeypatch):
    """Resolved per case from ``torch.cuda.mem_get_info`` (simulated here); on the CPU it is 1."""
    monkeypatch.setattr(sliding_window, "free_gpu_bytes", lambda device: 6 * GiB)
    model = small_model()
    settings = InferenceSettings(window=(32, 160, 208), batch_size=None, device="cuda")
    expected = gpu_batch_size(6 * GiB, settings.window, 1, NetworkWidths.of(model), batching.stitching_bytes(72 * 300 * 400, 3, 1))
    assert sliding_window.batch_size_for(settings, [model], (72, 300, 400)) == expected
    assert sliding_window.batch_size_for(InferenceSettings(batch_size=None), [model], (72, 300, 400)) == 1
    assert sliding_window.batch_size_for(InferenceSettings(batch_size=5, device="cuda"), [model], (72, 300, 400)) == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_logits_equal_the_cpu_ones():
    volume = torch.from_numpy(np.random.default_rng(6).normal(size=(40, 70, 70)).astype(np.float32))
    model = small_model(2)
    cpu = predict_logits(model, volume, InferenceSettings(window=(32, 32, 32), mirror_axes=(2,)))[0]
    model.to("cuda")
    for stitch in (None, "cpu"):
        gpu = predict_logits(model, volume, InferenceSettings(window=(32, 32, 32), mirror_axes=(2,), batch_size=None,
                                                              device="cuda", stitch_device=stitch))[0]
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
