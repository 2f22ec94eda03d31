"""The network conforms to the network specification (../shared/spec/network.md): state-dict names and shapes, the reference vector,
another configuration, and the efficient forward equal to the literal reference (model/reference.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import requires_shared
from panther_seg.network import SegFormer3D, reference_forward
from panther_seg.contract.checkpoint import load_checkpoint


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


SMALL = dict(embed_dims=(8, 16, 32, 40), num_heads=(1, 1, 2, 4), decoder_C=16, sr_ratios=(2, 2, 2, 1))
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


def perturbed(config: dict, seed: int) -> SegFormer3D:
    """A network whose BatchNorm statistics and affine parameters are not the identity, so that
    folding them into the convolutions is actually exercised."""
    torch.manual_seed(seed)
    model = SegFormer3D(**config).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("config, shape", [({}, (16, 32, 48)), (SECOND_CONFIG, (12, 36, 44)), (SMALL, (9, 23, 30))],
                         ids=["default", "second", "small-odd-shape"])
def test_efficient_forward_equals_the_literal_reference(config, shape):
    model = perturbed(config, seed=1)
    x = torch.randn(2, config.get("in_channels", 1), *shape)
    with torch.no_grad():
        ours = model(x)
        literal = reference_forward(model, x)
        predicted = model.predict(x)
    for a, b in zip(ours, literal):
        assert a.shape == (2, config.get("num_classes", 3), *shape)
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    assert torch.allclose(predicted, literal[0], atol=1e-4)


def test_training_mode_uses_batch_statistics_like_the_reference():
    model = perturbed(SECOND_CONFIG, seed=3).train()
    x = torch.randn(2, 2, 8, 32, 32)
    assert torch.allclose(model(x)[0], reference_forward(model, x)[0], atol=1e-4)


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
