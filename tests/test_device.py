"""A GPU that CUDA cannot use is reported loudly, never silently replaced by the CPU."""
from __future__ import annotations

import logging

import pytest
import torch

from panther_seg.system import device
from panther_seg.cli import configure_logging
from panther_seg.errors import InputError


def test_gpu_present_but_cuda_unusable_warns_on_stderr_and_runs_on_cpu(monkeypatch, capsys):
    configure_logging()
    monkeypatch.setattr(device, "gpu_present", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.select_device("auto") == "cpu"
    err = capsys.readouterr().err
    assert "GPU is present but CUDA cannot be used" in err and torch.version.__version__.split("+")[0] in err


def test_no_gpu_means_cpu_without_a_warning(monkeypatch, capsys):
    configure_logging()
    monkeypatch.setattr(device, "gpu_present", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.select_device("auto") == "cpu"
    assert capsys.readouterr().err == ""


def test_asking_for_cuda_without_it_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available"):
        device.select_device("cuda")
    logging.getLogger("panther_seg").handlers.clear()


def test_out_of_gpu_memory_stitches_on_the_host_then_one_window_then_the_cpu(monkeypatch, capsys, tiny_window_checkpoint):
    """Out of memory, the case is retried with the stitching on the host (the network stays where
    it is), then with one window per pass, then on the CPU, each time with a warning: the case is
    not lost (nnU-Net's behaviour), and the result is the same."""
    import numpy as np

    from conftest import PANTHER_STATS
    from panther_seg.inference import pipeline
    from panther_seg.contract.checkpoint import load_checkpoint
    from panther_seg.contract.resources import Resources
    from panther_seg.inference.sliding_window import InferenceSettings

    loaded = load_checkpoint(tiny_window_checkpoint)
    segmenter = pipeline.Segmenter(Resources([loaded], PANTHER_STATS, [tiny_window_checkpoint], "test"),
                                   InferenceSettings(batch_size=4, mirror_axes=()))
    model = segmenter.models[0]
    moves: list[str] = []
    real_to = model.to
    monkeypatch.setattr(model, "to", lambda device, *a, **k: (moves.append(str(device)), real_to(device, *a, **k))[1])
    real = pipeline.predict_probabilities
    calls = []

    def out_of_memory_three_times(models, volume, settings, on_mirroring=None):
        calls.append((settings.batch_size, settings.device, settings.stitch_device, list(moves)))
        if len(calls) <= 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(models, volume, settings, on_mirroring)

    monkeypatch.setattr(pipeline, "predict_probabilities", out_of_memory_three_times)
    volume = torch.from_numpy(np.random.default_rng(0).normal(size=(20, 40, 40)).astype(np.float32))
    configure_logging()
    result, votes = segmenter.probabilities(volume)
    assert votes is None  # no mirroring: nothing to record
    assert calls == [(4, "cpu", None, []), (4, "cpu", "cpu", []), (1, "cpu", "cpu", []), (1, "cpu", None, ["cpu"])]
    err = capsys.readouterr().err
    assert err.index("stitching on the host, the network still on the GPU") < err.index("retrying with 1") < err.index("running this case on the CPU")
    assert torch.allclose(result, real(segmenter.models, volume, InferenceSettings(window=(32, 32, 32), mirror_axes=())), atol=1e-5, rtol=0)


def test_the_fallbacks_skip_what_is_already_so():
    from panther_seg.inference.pipeline import gpu_fallbacks
    from panther_seg.inference.sliding_window import InferenceSettings

    auto = [(s.batch_size, s.stitch_device) for s, _ in gpu_fallbacks(InferenceSettings(batch_size=None, device="cuda"))]
    assert auto == [(None, None), (None, "cpu"), (1, "cpu")]
    one = [(s.batch_size, s.stitch_device) for s, _ in gpu_fallbacks(InferenceSettings(batch_size=1, device="cuda"))]
    assert one == [(1, None), (1, "cpu")]
