"""A GPU that CUDA cannot use is reported loudly, never silently replaced by the CPU."""
from __future__ import annotations

import logging

import pytest
import torch

from panther_seg import device
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
