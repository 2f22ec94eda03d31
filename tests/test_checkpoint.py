"""Each checkpoint format loads strictly; wrong ones fail with a clear message; baked resources
are verified against their SHA-256 sums."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import PANTHER_STATS, SMALL_CONFIG, small_model
from panther_seg.network import SegFormer3D
from panther_seg.contract.checkpoint import RESOURCE_FORMAT, ModelContract, load_checkpoint, save_resource
from panther_seg.contract.resources import verify_sha256sums, write_sha256sums
from panther_seg.errors import InputError
from panther_seg.inference.preprocessing import PreprocessingOptions
from panther_seg.contract.resources import bake, resolve_resources
from panther_seg.contract.stats import read_stats_csv, write_stats_csv

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
    ({"class_names": ["background", "tumour"]}, "expected 3 distinct names, one per network output"),
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
    bake([small_checkpoint], None, resources)
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
    bake([small_checkpoint], None, resources)
    model_dir = tmp_path / "opt-ml-model"
    model_dir.mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in SegFormer3D().state_dict().items()}}, model_dir / "best_model.ckpt")
    with pytest.raises(InputError, match="no mri_statistics.csv beside it"):
        resolve_resources(model_dir=model_dir, resources_dir=resources)
    write_stats_csv(PANTHER_STATS, model_dir / "mri_statistics.csv")
    found = resolve_resources(model_dir=model_dir, resources_dir=resources)
    assert found.checkpoint_paths == [model_dir / "best_model.ckpt"] and found.members[0].kind == "Lightning checkpoint"


def test_sha256sums_written_for_checkpoint_and_statistics(tmp_path, small_checkpoint):
    bake([small_checkpoint], None, tmp_path)
    write_stats_csv(PANTHER_STATS, tmp_path / "mri_statistics.csv")
    names = [line.split()[1] for line in write_sha256sums(tmp_path).read_text().splitlines()]
    assert names == ["mri_statistics.csv", "small.pt"]


# --- every metadata field of a resource checkpoint and of a statistics file is validated ----------


def resource_payload(small_checkpoint) -> dict:
    return torch.load(small_checkpoint, map_location="cpu", weights_only=True)


def set_field(name: str, value):
    def edit(payload: dict) -> None:
        *parents, leaf = name.split(".")
        target = payload
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return edit


DELETE = object()
NAN = float("nan")
BAD_FIELDS = {  # name: (edit, expected message after "<file>: ")
    "no format": (set_field("format", "something-else"), "field 'format': expected 'panther-segformer3d-resource'"),
    "no version": (set_field("version", DELETE), "field 'version': missing"),
    "future version": (set_field("version", 99), "field 'version': 99 is not a version this code reads (1, 2)"),
    "version as text": (set_field("version", "1"), "field 'version': '1' is not a version"),
    "no model_config": (set_field("model_config", DELETE), "field 'model_config': missing"),
    "model_config a list": (set_field("model_config", [1, 2]), "field 'model_config': expected a dict of constructor arguments, got a list"),
    "unknown constructor arg": (set_field("model_config.width", 3), "field 'model_config': unknown constructor argument 'width'"),
    "impossible heads": (set_field("model_config.num_heads", [3, 3, 3, 3]), "field 'model_config': the network it builds cannot run"),
    "no state_dict": (set_field("state_dict", DELETE), "field 'state_dict': missing"),
    "state_dict a list": (set_field("state_dict", [1]), "field 'state_dict': expected a dict of tensors, got a list"),
    "NaN weight": (lambda p: p["state_dict"]["decoder.cls.bias"].fill_(NAN), "checkpoint has NaN or infinite weights (1 tensors: decoder.cls.bias)"),
    "class_names short": (set_field("class_names", ["background", "tumour"]), "field 'class_names': ['background', 'tumour']: expected 3 distinct names"),
    "class_names repeated": (set_field("class_names", ["a", "a", "b"]), "field 'class_names': ['a', 'a', 'b']: expected 3 distinct names"),
    "class_names numbers": (set_field("class_names", [0, 1, 2]), "field 'class_names': expected a list of non-empty names"),
    "direction of 6": (set_field("training_direction", [1.0, 0, 0, 0, 1, 0]), "field 'training_direction': expected 9 finite numbers (a 3 x 3 matrix), got 6"),
    "direction NaN": (set_field("training_direction", [NAN] * 9), "field 'training_direction': expected 9 finite numbers"),
    "direction text": (set_field("training_direction", "identity"), "field 'training_direction': expected 9 numbers"),
    "direction sheared": (set_field("training_direction", [1.0, 0.5, 0, 0, 1, 0, 0, 0, 1]), "field 'training_direction': not orthonormal"),
    "statistics a list": (set_field("statistics", [1, 2, 3]), "field 'statistics': expected a dict of median_spacing, p10_spacing, median_size, got a list"),
    "statistics NaN": (set_field("statistics.median_spacing", [NAN, 1.0, 3.0]), "field 'statistics.median_spacing': expected 3 finite numbers"),
    "statistics zero": (set_field("statistics.p10_spacing", [0.0, 0.0, 0.0]), "field 'statistics.p10_spacing': spacing [0.0, 0.0, 0.0] mm is outside the plausible 0.01 to 100.0 mm"),
    "statistics tiny": (set_field("statistics.median_spacing", [0.001, 0.001, 0.001]), "field 'statistics.median_spacing': spacing [0.001, 0.001, 0.001] mm is outside"),
    "statistics of 2": (set_field("statistics.median_size", [320.0, 260.0]), "field 'statistics.median_size': expected 3 finite numbers, got [320.0, 260.0]"),
    "statistics size 0": (set_field("statistics.median_size", [0.0, 260.0, 72.0]), "field 'statistics.median_size': size [0.0, 260.0, 72.0] voxels"),
    "statistics missing": (set_field("statistics.p10_spacing", DELETE), "field 'statistics.p10_spacing': missing"),
    "statistics extra": (set_field("statistics.mean", [1.0, 1.0, 1.0]), "field 'statistics.mean': unknown field"),
    "provenance a list": (set_field("provenance", ["x"]), "field 'provenance': expected a dict with text keys, got a list"),
    "unknown field": (set_field("patch_size", [32, 160, 208]), "field 'patch_size': unknown to this version of the resource format"),
    "window of 2": (set_field("window", [32, 160]), "field 'window': window must be 3 positive sizes (z, y, x)"),
    "window of 0": (set_field("window", [0, 160, 208]), "field 'window': window must be 3 positive sizes (z, y, x)"),
    "tumour class text": (set_field("tumour_class", "1"), "field 'tumour_class': expected an output channel number"),
    "tumour class 3 of 3": (set_field("tumour_class", 3), "the network has 3 output classes; the tumour class 3 is not one of its foreground classes 1..2"),
    "pancreas = tumour": (set_field("pancreas_class", 1), "tumour and pancreas are the same output class (1)"),
    "preprocessing unknown": (set_field("preprocessing", {"normalise": "minmax"}), "field 'preprocessing': normalise must be one of positive, nonzero"),
    "preprocessing extra": (set_field("preprocessing", {"crop": True}), "field 'preprocessing': unknown preprocessing options ['crop']"),
}


@pytest.mark.parametrize("name", list(BAD_FIELDS))
def test_each_bad_resource_field_is_one_line_naming_file_and_field(name, tmp_path, small_checkpoint):
    edit, message = BAD_FIELDS[name]
    payload = resource_payload(small_checkpoint)
    edit(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(InputError) as e:
        load_checkpoint(tmp_path / "bad.pt")
    assert str(e.value).startswith(f"{tmp_path / 'bad.pt'}: {message}"), str(e.value)
    assert "\n" not in str(e.value)


def test_a_resource_without_the_optional_fields_still_loads(tmp_path, small_checkpoint):
    payload = resource_payload(small_checkpoint)
    for name in ("class_names", "training_direction", "window", "tumour_class", "pancreas_class", "preprocessing", "statistics", "provenance"):
        payload.pop(name, None)
    torch.save(payload, tmp_path / "lean.pt")
    loaded = load_checkpoint(tmp_path / "lean.pt")
    assert loaded.stats is None and loaded.contract == ModelContract()  # the original protocol's


def test_a_network_configuration_of_absurd_size_costs_no_memory(tmp_path, small_checkpoint):
    """Built on the meta device first: a config of 10^5-wide layers is refused by size, not by OOM."""
    payload = resource_payload(small_checkpoint)
    payload["model_config"]["embed_dims"] = [100_000, 100_000, 100_000, 100_000]
    payload["model_config"]["num_heads"] = [1, 1, 1, 1]
    torch.save(payload, tmp_path / "wide.pt")
    with pytest.raises(InputError, match=r"field 'model_config': a network of 2,182,588,643,608 parameters does not fit a [0-9.]+ GiB memory limit"):
        load_checkpoint(tmp_path / "wide.pt")


STATS_HEADER = "median_spacing,10th_percentile_spacing,median_size\n"


@pytest.mark.parametrize("row,message", [
    ("[nan 1 3],[1 1 3],[320 260 72]", "field 'median_spacing': expected 3 finite numbers"),
    ("[1 1 3],[0 0 0],[320 260 72]", "field '10th_percentile_spacing': spacing [0.0, 0.0, 0.0] mm is outside the plausible"),
    ("[0.001 0.001 0.001],[1 1 3],[320 260 72]", "field 'median_spacing': spacing [0.001, 0.001, 0.001] mm is outside"),
    ("[1 1 3],[1 1 3],[320 -1 72]", "field 'median_size': size [320.0, -1.0, 72.0] voxels"),
    ("[1 1 3],[1 1 3],[320 260]", "field 'median_size': expected 3 finite numbers, got [320.0, 260.0]"),
    ("[1 1 3],[1 1 3]", "expected three bracketed vectors"),
])
def test_each_bad_statistics_field_is_one_line_naming_file_and_field(row, message, tmp_path):
    path = tmp_path / "mri_statistics.csv"
    path.write_text(STATS_HEADER + row + "\n")
    with pytest.raises(InputError) as e:
        read_stats_csv(path)
    assert str(e.value).startswith(f"{path}: statistics file malformed: {message}"), str(e.value)


def test_a_network_that_loads_but_cannot_segment_is_refused_for_inference(tmp_path):
    """Two input channels load (the network is valid) but the pipeline feeds one MRI; a network
    without the tumour and pancreas outputs is refused at load (its contract, above)."""
    config = {**SMALL_CONFIG, "in_channels": 2}
    save_resource(tmp_path / "other.pt", SegFormer3D(**config), config, PANTHER_STATS)
    assert load_checkpoint(tmp_path / "other.pt").config["in_channels"] == 2
    with pytest.raises(InputError) as e:
        resolve_resources([tmp_path / "other.pt"])
    assert str(e.value).startswith(f"{tmp_path / 'other.pt'}: the network cannot segment: field 'model_config': in_channels 2: the pipeline feeds one MRI channel")
