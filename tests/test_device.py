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


def test_out_of_gpu_memory_retries_with_one_window_then_on_the_cpu(monkeypatch, capsys, tiny_window_checkpoint):
    """The pass that runs out of memory is retried with one window per pass, then on the CPU,
    each time with a warning: the case is not lost (nnU-Net's behaviour)."""
    import numpy as np
    import torch

    from conftest import PANTHER_STATS
    from panther_seg.inference import pipeline
    from panther_seg.contract.checkpoint import load_checkpoint
    from panther_seg.contract.resources import Resources
    from panther_seg.inference.sliding_window import InferenceSettings

    loaded = load_checkpoint(tiny_window_checkpoint)
    segmenter = pipeline.Segmenter(Resources([loaded], PANTHER_STATS, [tiny_window_checkpoint], "test"),
                                   InferenceSettings(batch_size=4, mirror_axes=()))
    real = pipeline.predict_probabilities
    calls = []

    def out_of_memory_twice(models, volume, settings):
        calls.append((settings.batch_size, settings.device))
        if len(calls) <= 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(models, volume, settings)

    monkeypatch.setattr(pipeline, "predict_probabilities", out_of_memory_twice)
    volume = torch.from_numpy(np.random.default_rng(0).normal(size=(20, 40, 40)).astype(np.float32))
    configure_logging()
    result = segmenter.probabilities(volume)
    assert calls == [(4, "cpu"), (1, "cpu"), (1, "cpu")]
    err = capsys.readouterr().err
    assert "retrying with 1" in err and "running this case on the CPU" in err
    assert torch.allclose(result, real(segmenter.models, volume, InferenceSettings(window=(32, 32, 32), mirror_axes=())))
