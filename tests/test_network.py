"""The network conforms to spec/network.md: state-dict names and shapes, the reference vector,
another configuration, and fused attention equal to the explicit attention matrix."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import requires_shared
from model import SegFormer3D, set_fused_attention
from panther_seg.checkpoint import load_checkpoint


def test_default_state_dict_matches_reference_names_shapes_and_dtypes():
    tsv = requires_shared("reference", "segformer3d", "state_dict_default.tsv")
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:] if line.strip()]
    ours = [(k, str(list(v.shape)), str(v.dtype).removeprefix("torch.")) for k, v in SegFormer3D().state_dict().items()]
    assert ours == [tuple(r) for r in rows]


def test_reference_vector_reproduced_to_1e4_through_the_lightning_checkpoint():
    folder = requires_shared("reference", "segformer3d", "vector_small")
    config = json.loads((folder / "config.json").read_text())["config"]
    loaded = load_checkpoint(folder / "checkpoint.ckpt", config)
    vector = np.load(folder / "vector.npz")
    with torch.no_grad():
        logits, aux = loaded.model(torch.from_numpy(vector["input"]))
        predicted = loaded.model.predict(torch.from_numpy(vector["input"]))
    assert np.abs(logits.numpy() - vector["logits"]).max() < 1e-4
    assert np.abs(aux.numpy() - vector["aux"]).max() < 1e-4
    assert np.abs(predicted.numpy() - vector["logits"]).max() < 1e-4


SECOND_CONFIG = dict(
    in_channels=2, num_classes=4, embed_dims=(16, 24, 40, 48), depths=(1, 2, 1, 1), num_heads=(2, 3, 5, 6),
    sr_ratios=(2, 2, 1, 1), patch_kernel_size=(5, 3, 3, 3), patch_stride=(2, 2, 2, 2), patch_padding=(2, 1, 1, 1),
    mlp_ratios=(2, 3, 4, 2), use_hybrid_stem=False, decoder_C=24, aspp_rates=(1, 2), fuse_all=False,
)


def test_second_configuration_has_the_spec_structure():
    sd = SegFormer3D(**SECOND_CONFIG).state_dict()
    assert sd["encoder.embed_1.patch_embeddings.weight"].shape == (16, 2, 5, 5, 5)
    assert not any(k.startswith("encoder.embed_1.stem") for k in sd)
    assert not any(k.startswith("decoder.fuse") for k in sd)
    assert "encoder.tf_block3.0.attention.sr.weight" not in sd  # r == 1: keys from the input
    assert sd["encoder.tf_block1.0.attention.sr.weight"].shape == (16, 16, 2, 2, 2)
    assert sd["encoder.tf_block2.1.mlp.fc1.weight"].shape == (72, 24)
    assert sd["decoder.aspp.proj.weight"].shape == (24, 24 * 4, 1, 1, 1)
    assert sd["decoder.cam1.cse.fc1.weight"].shape == (8, 16, 1, 1, 1)  # max(16 / 8, 8)
    assert sd["decoder.ag1.theta_x.weight"].shape == (32, 16, 1, 1, 1)  # max(24 / 2, 32)
    assert "decoder.aspp.branches.3.0.dw.weight" not in sd and "decoder.aspp.branches.2.0.dw.weight" in sd


@pytest.mark.parametrize("config", [{}, SECOND_CONFIG], ids=["default", "second"])
def test_fused_attention_equals_explicit_attention_matrix(config):
    torch.manual_seed(1)
    model = SegFormer3D(**config).eval()
    x = torch.randn(1, config.get("in_channels", 1), 16, 32, 48)
    with torch.no_grad():
        fused = model(x)
        set_fused_attention(model, False)
        explicit = model(x)
    for a, b in zip(fused, explicit):
        assert a.shape == (1, config.get("num_classes", 3), 16, 32, 48)
        assert torch.allclose(a, b, atol=1e-4)


def test_second_configuration_round_trips_through_a_lightning_checkpoint(tmp_path):
    torch.manual_seed(2)
    model = SegFormer3D(**SECOND_CONFIG).eval()
    ckpt = {"epoch": 3, "global_step": 10, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": dict(SECOND_CONFIG)}
    torch.save(ckpt, tmp_path / "run.ckpt")
    loaded = load_checkpoint(tmp_path / "run.ckpt")
    x = torch.randn(1, 2, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model.predict(x), model.predict(x))
