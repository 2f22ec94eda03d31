"""Shared fixtures: a small network in the project's resource format and image writers.

The small network keeps CLI and geometry tests fast on two CPU cores; the pipeline around it
is the real one (window, overlap, TTA, post-processing, geometry)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from panther_seg.network import SegFormer3D
from panther_seg.contract.checkpoint import ModelContract, save_resource
from panther_seg.contract.stats import NormalisationStats

ROOT = Path(__file__).resolve().parent.parent  # this clone (the package is installed from it: pip install -e)
SHARED = ROOT.parent / "shared"

SMALL_CONFIG = dict(embed_dims=(8, 16, 32, 64), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), decoder_C=16)
PANTHER_STATS = NormalisationStats((1.1875, 1.1875, 3.0), (1.1875, 1.1875, 3.0), (320.0, 260.0, 72.0))
TINY_WINDOW = (32, 32, 32)  # a checkpoint may record its window: small volumes then span 3+ windows per axis


def requires_shared(*parts: str) -> Path:
    """A path under ../shared/, or skip: a user's clone has no ../shared/."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/{'/'.join(parts)} (reference data, not part of a user's clone)")
    return path


def small_model(seed: int = 0, bias: tuple[float, float, float] = (0.0, 0.4, -0.5)) -> SegFormer3D:
    torch.manual_seed(seed)
    model = SegFormer3D(**SMALL_CONFIG).eval()
    with torch.no_grad():  # make the tumour class win in places, so masks are not empty
        model.decoder.cls.bias.copy_(torch.tensor(bias))
    return model


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_resource(path, small_model(), SMALL_CONFIG, PANTHER_STATS, provenance={"note": "test network"})
    return path


@pytest.fixture(scope="session")
def tiny_window_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small network with a 32^3 window recorded in its contract, predicting both tumour and
    pancreas in places: the whole protocol, 3+ windows per axis, in seconds."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny_window.pt"
    save_resource(path, small_model(3, bias=(0.0, 0.3, 0.2)), SMALL_CONFIG, PANTHER_STATS, ModelContract(window=TINY_WINDOW),
                  provenance={"note": "test network, 32^3 window"})
    return path


def blob_volume(shape_zyx: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A smooth, non-symmetric int16 volume with a bright blob: something to segment."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape_zyx], indexing="ij")
    vol = 200 + 80 * np.exp(-((z - 0.2) ** 2 + (y + 0.3) ** 2 + (x - 0.1) ** 2) / 0.1) + 30 * x + 10 * y
    return (vol + rng.normal(0, 5, shape_zyx)).astype(np.int16)


def write_image(path: Path, array: np.ndarray, spacing=(1.1875, 1.1875, 3.0), origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(tuple(np.asarray(direction, dtype=float).ravel()))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return image


def gc_input(root: Path, array: np.ndarray, **geometry) -> Path:
    """An /input tree in grand-challenge layout holding one image."""
    write_image(root / "images" / "abdominal-t1-mri" / "3f2a9c1e-uuid.mha", array, **geometry)
    return root


@pytest.fixture(autouse=True)
def fresh_panther_logger():
    """The command line points the package's logger at the streams of the moment and stops it
    propagating; after each test it is reset, so that the next test's caplog and capsys see it."""
    yield
    logger = logging.getLogger("panther_seg")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
