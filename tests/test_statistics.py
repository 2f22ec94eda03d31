"""--statistics through the command line: <case>_statistics.json beside each mask (schema 1,
docs/statistics.md) with the measurements, confidence, timings, the model's provenance and the
protocol; statistics.csv with one row per case, refused cases included; and the one loud
WARNING line of a demonstration checkpoint."""
from __future__ import annotations

import csv
import json

import pytest
import SimpleITK as sitk

from conftest import PANTHER_STATS, SMALL_CONFIG, TINY_WINDOW, blob_volume, small_model, write_image
from panther_seg.cli import main
from panther_seg.contract.checkpoint import ModelContract, save_resource
from panther_seg.contract.resources import resolve_resources
from panther_seg.reporting.measurements import measure
from panther_seg.reporting.statistics import CSV_COLUMNS, SCHEMA, SCHEMA_VERSION

DEMO_NOTE = "DEMONSTRATION ONLY: trained on 24 synthetic PANTHER-like cases; never trained on real MRI"


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.pt"
    save_resource(path, small_model(3, bias=(0.0, 0.3, 0.2)), SMALL_CONFIG, PANTHER_STATS, ModelContract(window=TINY_WINDOW),
                  provenance={"note": DEMO_NOTE, "exported": "2026-11-26T17:21:35+00:00", "training_git_revision": "abc123",
                              "data": {"fold": 0, "train_cases": ["a", "b"], "val_cases": ["c"]}})
    return path


def test_statistics_json_and_csv_in_batch_mode(tiny_window_checkpoint, tmp_path, capsys):
    cases = tmp_path / "cases"
    write_image(cases / "case1.nii.gz", blob_volume((24, 48, 52), seed=5), spacing=(1.0, 1.2, 3.3))
    (cases / "broken.mha").write_bytes(b"not an image")
    out = tmp_path / "out"
    status = main(["-i", str(cases), "-o", str(out), "--checkpoint", str(tiny_window_checkpoint), "--device", "cpu",
                   "--fast", "--statistics", "--save-pancreas"])
    assert status == 1  # one case refused
    data = json.loads((out / "case1_statistics.json").read_text())
    assert data["schema"] == SCHEMA and data["schema_version"] == SCHEMA_VERSION
    assert data["case"] == "case1" and data["status"] == "done" and data["input"] == str(cases / "case1.nii.gz")
    assert data["outputs"] == {"tumour": "case1.nii.gz", "pancreas": "case1_pancreas.nii.gz"}
    expected = measure(sitk.ReadImage(str(cases / "case1.nii.gz")), sitk.ReadImage(str(out / "case1.nii.gz")),
                       sitk.ReadImage(str(out / "case1_pancreas.nii.gz")))
    m = data["measurements"]
    assert expected.tumour_volume_ml > 0
    assert m["tumour_volume_ml"] == pytest.approx(expected.tumour_volume_ml, abs=1e-4)
    assert m["lesion_count"] == len(m["lesions"]) == len(expected.lesions)
    assert m["pancreas_volume_ml"] == pytest.approx(expected.pancreas_volume_ml, abs=1e-4)
    assert m["longest_diameter_mm"] == pytest.approx(expected.longest_diameter_mm, abs=0.01)
    assert m["size_category"] == expected.size_category
    assert data["confidence"]["computed"] is False and data["confidence"]["mean_dice"] is None  # --fast: none invented
    assert "no mirroring" in data["confidence"]["reason"]
    assert {"read", "network", "postprocess", "measure", "write"} <= set(data["timings_s"])
    assert data["model"]["demonstration"] is False
    (checkpoint,) = data["model"]["checkpoints"]
    assert checkpoint["file"] == tiny_window_checkpoint.name and len(checkpoint["sha256"]) == 64
    assert checkpoint["note"] == "test network, 32^3 window"
    assert data["protocol"]["mirrorings"] == 1 and "overlap 0.25" in data["protocol"]["description"]

    with open(out / "statistics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CSV_COLUMNS)
    by_case = {row["case"]: row for row in rows}
    assert set(by_case) == {"broken", "case1"}
    assert by_case["broken"]["status"] == "refused" and "broken.mha" in by_case["broken"]["error"]
    assert by_case["broken"]["tumour_volume_ml"] == ""
    assert not (out / "broken_statistics.json").exists()
    assert by_case["case1"]["status"] == "done" and float(by_case["case1"]["tumour_volume_ml"]) == pytest.approx(m["tumour_volume_ml"])
    assert by_case["case1"]["confidence_computed"] == "no" and by_case["case1"]["lesions"] == str(m["lesion_count"])
    assert "DEMONSTRATION" not in capsys.readouterr().err


def test_one_input_writes_its_statistics_beside_the_named_mask(tiny_window_checkpoint, tmp_path):
    src = tmp_path / "scan.mha"
    write_image(src, blob_volume((24, 48, 52), seed=6))
    mask = tmp_path / "result" / "mask.nii.gz"
    assert main(["-i", str(src), "-o", str(mask), "--checkpoint", str(tiny_window_checkpoint), "--device", "cpu",
                 "--fast", "--statistics"]) == 0
    data = json.loads((tmp_path / "result" / "mask_statistics.json").read_text())
    assert data["case"] == "mask" and data["outputs"] == {"tumour": "mask.nii.gz"}
    assert data["measurements"]["pancreas_volume_ml"] is not None  # measured even when the pancreas mask is not saved
    assert not (tmp_path / "result" / "statistics.csv").exists()


def test_statistics_needs_batch_mode(capsys):
    assert main(["--statistics"]) == 2
    assert "error: --statistics goes with -i/--input" in capsys.readouterr().err


def test_a_demonstration_checkpoint_warns_once_on_every_run(demo_checkpoint, tmp_path, capsys):
    src = tmp_path / "scan.nii.gz"
    write_image(src, blob_volume((24, 48, 52), seed=7))
    for run in ("a", "b"):
        assert main(["-i", str(src), "-o", str(tmp_path / run), "--checkpoint", str(demo_checkpoint), "--device", "cpu",
                     "--fast", "--statistics"]) == 0
        err = capsys.readouterr().err
        warnings = [line for line in err.splitlines() if line.startswith("WARNING:")]
        assert len(warnings) == 1 and "DEMONSTRATION" in warnings[0] and "synthetic" in warnings[0], err
        data = json.loads((tmp_path / run / "scan_statistics.json").read_text())
        assert data["model"]["demonstration"] is True
        assert data["model"]["checkpoints"][0]["trained_on"] == {"fold": 0, "train_cases": 2, "val_cases": 1}


def test_the_baked_checkpoint_is_recognised_as_a_demonstration():
    """resources/segformer3d.pt records in its provenance that it was trained on synthetic data."""
    resources = resolve_resources()
    assert resources.demonstration
    assert resources.provenance["checkpoints"][0]["demonstration"] is True
