"""Each checkpoint format loads strictly; wrong ones fail with a clear message; baked resources
are verified against their SHA-256 sums."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import PANTHER_STATS, SMALL_CONFIG, small_model
from model import SegFormer3D
from panther_seg.checkpoint import RESOURCE_FORMAT, ModelContract, load_checkpoint, save_resource, verify_sha256sums, write_sha256sums
from panther_seg.errors import InputError
from panther_seg.preprocessing import PreprocessingOptions
from panther_seg.resources import bake, resolve_resources
from panther_seg.stats import write_stats_csv

X = torch.randn(1, 1, 16, 32, 32)


def same_function(a: SegFormer3D, b: SegFormer3D) -> bool:
    with torch.no_grad():
        return torch.equal(a.predict(X), b.predict(X))


def test_resource_format_records_configuration_contract_and_statistics(tmp_path):
    model = small_model()
    direction = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])
    contract = ModelContract(window=(32, 64, 96), class_names=("bg", "pancreas", "lesion"), tumour_class=2, pancreas_class=1,
                             preprocessing=PreprocessingOptions("training", "if-needed", "nonzero"),
                             training_direction=tuple(direction.ravel()))
    save_resource(tmp_path / "r.pt", model, SMALL_CONFIG, PANTHER_STATS, contract, provenance={"data": "x"})
    loaded = load_checkpoint(tmp_path / "r.pt")
    assert loaded.kind == "project resource"
    assert loaded.config["embed_dims"] == list(SMALL_CONFIG["embed_dims"])
    assert loaded.contract == contract and np.array_equal(loaded.contract.direction_matrix(), direction)
    assert loaded.stats == PANTHER_STATS and loaded.provenance == {"data": "x"}
    assert same_function(loaded.model, model)


def test_the_original_formats_and_first_resource_version_get_the_original_protocol(tmp_path):
    model = small_model()
    save_resource(tmp_path / "r.pt", model, SMALL_CONFIG, PANTHER_STATS)
    payload = torch.load(tmp_path / "r.pt", weights_only=True)
    for key in ("window", "tumour_class", "pancreas_class", "preprocessing"):
        payload.pop(key)
    payload["version"] = 1
    torch.save(payload, tmp_path / "v1.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "hyper_parameters": SMALL_CONFIG}, tmp_path / "l.ckpt")
    for name in ("v1.pt", "l.ckpt"):
        contract = load_checkpoint(tmp_path / name).contract
        assert contract.window == (32, 160, 208) and (contract.tumour_class, contract.pancreas_class) == (1, 2)
        assert contract.preprocessing == PreprocessingOptions("storage", "always", "positive")


@pytest.mark.parametrize("change, message", [
    ({"num_classes": 2}, "has 2 output classes; the pancreas class 2 is not one of its foreground classes"),
    ({"tumour_class": 0}, "the tumour class 0 is not one of its foreground classes 1..2"),
    ({"pancreas_class": 1}, "tumour and pancreas are the same output class (1)"),
    ({"window": [32, 160]}, "window must be 3 positive sizes"),
    ({"preprocessing": {"normalise": "minmax"}}, "normalise must be one of positive, nonzero"),
    ({"class_names": ["background", "tumour"]}, "class_names lists 2 classes but the network has 3 outputs"),
])
def test_a_contract_the_pipeline_cannot_honour_is_refused_at_load_in_one_line(tmp_path, change, message):
    change = dict(change)
    config = {**SMALL_CONFIG, "num_classes": change.pop("num_classes", 3)}
    payload = {"format": RESOURCE_FORMAT, "version": 2, "model_config": config,
               "state_dict": SegFormer3D(**config).state_dict(), **change}
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(InputError) as e:
        load_checkpoint(tmp_path / "bad.pt")
    assert str(e.value).startswith(f"{tmp_path / 'bad.pt'}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_bare_state_dict_and_lightning_checkpoint_of_the_default_network(tmp_path):
    model = SegFormer3D().eval()
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    torch.save({"epoch": 1, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "optimizer_states": [], "lr_schedulers": []}, tmp_path / "best_model.ckpt")
    for name, kind in (("bare.pth", "state dict"), ("best_model.ckpt", "Lightning checkpoint")):
        loaded = load_checkpoint(tmp_path / name)
        assert loaded.kind == kind and loaded.stats is None
        assert same_function(loaded.model, model)


def test_checkpoint_of_another_network_lists_missing_unexpected_and_wrong_shapes(tmp_path):
    sd = SegFormer3D().state_dict()
    sd.pop("decoder.cls.bias")
    sd["decoder.extra.weight"] = torch.zeros(1)
    sd["decoder.cls.weight"] = torch.zeros(5, 128, 1, 1, 1)
    torch.save(sd, tmp_path / "other.pt")
    with pytest.raises(InputError) as e:
        load_checkpoint(tmp_path / "other.pt")
    message = str(e.value)
    assert "other.pt" in message and "missing (1): decoder.cls.bias" in message
    assert "unexpected (1): decoder.extra.weight" in message and "wrong shape (1): decoder.cls.weight" in message


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, content):
    (tmp_path / "bad.ckpt").write_bytes(content)
    with pytest.raises(InputError, match="bad.ckpt: cannot load checkpoint"):
        load_checkpoint(tmp_path / "bad.ckpt")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="nope.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"state_dict": {"model.x": torch.zeros(1)}, "evil": object()}, tmp_path / "pickle.ckpt")
    with pytest.raises(InputError, match="cannot load checkpoint"):
        load_checkpoint(tmp_path / "pickle.ckpt")


def test_baked_resources_are_verified_and_a_damaged_file_is_refused(tmp_path, small_checkpoint):
    resources = tmp_path / "resources"
    bake(small_checkpoint, None, resources)
    verify_sha256sums(resources)
    found = resolve_resources(model_dir=tmp_path / "no-model-dir", resources_dir=resources)
    assert found.checkpoint_paths == [resources / "small.pt"] and found.stats == PANTHER_STATS
    with open(resources / "small.pt", "r+b") as f:
        f.seek(-10, 2)
        f.write(b"0123456789")
    with pytest.raises(InputError, match="small.pt: SHA-256 mismatch"):
        resolve_resources(model_dir=tmp_path / "no-model-dir", resources_dir=resources)


def test_model_tarball_folder_wins_over_baked_resources_and_stats_come_from_beside_it(tmp_path, small_checkpoint):
    resources = tmp_path / "resources"
    bake(small_checkpoint, None, resources)
    model_dir = tmp_path / "opt-ml-model"
    model_dir.mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in SegFormer3D().state_dict().items()}}, model_dir / "best_model.ckpt")
    with pytest.raises(InputError, match="no mri_statistics.csv beside it"):
        resolve_resources(model_dir=model_dir, resources_dir=resources)
    write_stats_csv(PANTHER_STATS, model_dir / "mri_statistics.csv")
    found = resolve_resources(model_dir=model_dir, resources_dir=resources)
    assert found.checkpoint_paths == [model_dir / "best_model.ckpt"] and found.members[0].kind == "Lightning checkpoint"


def test_sha256sums_written_for_checkpoint_and_statistics(tmp_path, small_checkpoint):
    bake(small_checkpoint, None, tmp_path)
    write_stats_csv(PANTHER_STATS, tmp_path / "mri_statistics.csv")
    names = [line.split()[1] for line in write_sha256sums(tmp_path).read_text().splitlines()]
    assert names == ["mri_statistics.csv", "small.pt"]
