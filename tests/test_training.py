"""Synthetic data, preprocessing, training, export and the exported file in inference.

Small on purpose (tiny volumes and network, a few steps, one torch thread): the whole file runs
in a few minutes on two CPU cores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from panther_seg.checkpoint import ModelContract, load_checkpoint
from panther_seg.config import PROJECT_ROOT, STATS_FILE_NAME
from panther_seg.stats import HEADER, read_stats_csv
from panther_seg.synthetic import make_case, write_dataset
from panther_seg.training import preprocess
from panther_seg.training.config import load_config, parse_set
from panther_seg.training.module import lr_factor, mean_dice_over_cases
from panther_seg.training.splits import make_splits, read_split

SHAPE = (16, 48, 64)
TINY = [
    "window=[16,32,32]", "val_window=[16,32,32]", "batch_size=2", "max_steps=4", "steps_per_validation=2", "warmup_steps=2",
    "num_workers=0", "model.embed_dims=[16,32,64,128]", "model.num_heads=[1,2,4,8]", "model.decoder_C=32",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    write_dataset(out, 4, seed=1, shape_zyx=SHAPE)
    return out


@pytest.fixture(scope="module")
def preprocessed(dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("preprocessed")
    preprocess.preprocess_dataset(dataset, out, workers=1)
    return out


def test_synthetic_case_is_deterministic_and_labelled() -> None:
    a_img, a_lab = make_case(7, SHAPE)
    b_img, b_lab = make_case(7, SHAPE)
    img, lab = sitk.GetArrayFromImage(a_img), sitk.GetArrayFromImage(a_lab)
    assert np.array_equal(img, sitk.GetArrayFromImage(b_img)) and np.array_equal(lab, sitk.GetArrayFromImage(b_lab))
    assert not np.array_equal(img, sitk.GetArrayFromImage(make_case(8, SHAPE)[0]))
    assert img.shape == SHAPE and img.dtype == np.int16 and img.min() > 0  # no zero background
    assert set(np.unique(lab)) == {0, 1, 2}
    assert img[lab == 1].mean() < img[lab == 2].mean()  # hypo-intense tumour
    assert 100 < img[lab == 1].mean() < 350  # the published tumour intensity range
    assert a_img.GetSize() == SHAPE[::-1] and a_img.GetSpacing() == a_lab.GetSpacing()


def test_synthetic_geometry_follows_the_fingerprint_and_is_fast() -> None:
    image, _ = make_case(0, shape_zyx=(8, 8, 8))
    spacing = image.GetSpacing()
    assert 0.69 <= spacing[0] <= 1.32 and 3.0 <= spacing[2] <= 3.5
    make_case(1, (48, 160, 192))
    start = time.perf_counter()
    make_case(2, (48, 160, 192))
    assert time.perf_counter() - start < 1.5  # < 1 s on an idle core; slack for shared CI machines


def test_splits_are_by_case_id() -> None:
    splits = make_splits([f"c{i}" for i in range(7)], 3)
    assert len(splits) == 3
    assert sorted(c for s in splits for c in s["val"]) == [f"c{i}" for i in range(7)]
    for s in splits:
        assert not set(s["train"]) & set(s["val"])
    assert make_splits([f"c{i}" for i in reversed(range(7))], 3) == splits


@pytest.mark.skipif(not Path("/work/shared/panther/task1_splits_final.json").is_file(), reason="organisers' split not available")
def test_reads_the_organisers_split() -> None:
    train, val = read_split(Path("/work/shared/panther/task1_splits_final.json"), 0)
    assert len(train) + len(val) == 92 and not set(train) & set(val)


def test_config_overrides() -> None:
    cfg = load_config(None, ["lr=1e-3", "window=[16,32,32]", "aug.rotate_prob=0", "model.decoder_C=32"])
    assert cfg.lr == 1e-3 and cfg.window == (16, 32, 32) and cfg.aug.rotate_prob == 0 and cfg.model == {"decoder_C": 32}
    assert cfg.batch_size == 2 and cfg.warmup_steps == 9000  # the recipe's defaults stay
    assert parse_set(["a.b=[1, 2]"]) == {"a": {"b": [1, 2]}}
    for bad in (["nope=1"], ["max_steps=1.5"], ["window=[1,2]"], ["lr"]):
        with pytest.raises(ValueError):
            load_config(None, bad)


def test_learning_rate_schedule() -> None:
    assert lr_factor(0, 10, 110, 0.9) == pytest.approx(0.1)
    assert lr_factor(9, 10, 110, 0.9) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110, 0.9) == pytest.approx(0.5**0.9)
    assert lr_factor(200, 10, 110, 0.9) == 0.0


def test_validation_dice_counts_each_case_once() -> None:
    """DDP's sampler repeats cases to even out the processes: case 0 scored twice counts once."""
    rows = np.array([[0, 0.2, 0.4], [1, 0.8, 0.6], [0, 0.2, 0.4]])
    assert mean_dice_over_cases(rows) == pytest.approx((0.5, 0.5, 2))
    assert mean_dice_over_cases(np.zeros((0, 3))) == (0.0, 0.0, 0)


def test_preprocess_command(dataset: Path, tmp_path: Path) -> None:
    bad = sitk.GetImageFromArray(np.full(SHAPE, 5, np.uint8))
    bad.CopyInformation(sitk.ReadImage(str(dataset / "imagesTr" / "90000_0001_0000.mha")))
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted((dataset / "imagesTr").iterdir())[:2] + sorted((dataset / "labelsTr").iterdir())[:2]:
        (data / p.name).symlink_to(p)  # PANTHER layout: images and labels in one folder
    image = sitk.ReadImage(str(dataset / "imagesTr" / "90000_0001_0000.mha"))
    sitk.WriteImage(image, str(data / "badcase_0000.mha"))
    sitk.WriteImage(bad, str(data / "badcase.mha"))
    out = tmp_path / "out"
    result = run("-m", "panther_seg.training.preprocess", str(data), str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "badcase" in result.stderr and "outside" in result.stderr
    lines = (out / STATS_FILE_NAME).read_text().splitlines()
    assert lines[0] == HEADER and lines[1].count("[") == 3
    stats = read_stats_csv(out / STATS_FILE_NAME)
    spacings = [sitk.ReadImage(str(data / f"{c}_0000.mha")).GetSpacing() for c in ("90000_0001", "90001_0001")]
    assert stats.median_spacing == pytest.approx(np.median(spacings, axis=0), rel=1e-6)
    assert sorted(p.name for p in out.glob("*.npz")) == ["90000_0001.npz", "90001_0001.npz"]
    with np.load(out / "90000_0001.npz") as f:
        img, lab, spacing = f["image"], f["label"], f["spacing"]
    assert img.dtype == np.float32 and lab.dtype == np.uint8 and img.ndim == lab.ndim == 4
    assert img.shape == lab.shape and img.shape[0] == 1 and set(np.unique(lab)) <= {0, 1, 2}
    assert spacing == pytest.approx(stats.target_spacing()[::-1])
    assert abs(float(img[img != 0].mean())) < 0.05  # z-scored
    before = (out / "90000_0001.npz").stat().st_mtime_ns
    _, cases, problems = preprocess.preprocess_dataset(data, out, workers=1)
    assert cases == ["90000_0001", "90001_0001"] and len(problems) == 1
    assert (out / "90000_0001.npz").stat().st_mtime_ns == before  # up to date: not rewritten


def test_train_export_and_inference(dataset: Path, preprocessed: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run("-m", "panther_seg.training.train", "--data", str(preprocessed), "--split", str(dataset / "splits_final.json"),
                 "--fold", "0", "--out", str(run_dir), "--accelerator", "cpu", "--set", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "best.ckpt").is_file() and (run_dir / "last.ckpt").is_file()
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["seed"] == 12345 and run_info["val_cases"] == read_split(dataset / "splits_final.json", 0)[1]
    assert list((run_dir / "logs").glob("events.out.tfevents.*"))

    resumed = run("-m", "panther_seg.training.train", "--data", str(preprocessed), "--split", str(dataset / "splits_final.json"),
                  "--fold", "0", "--out", str(run_dir), "--accelerator", "cpu", "--resume", "--set", *TINY[:3], "max_steps=6", *TINY[4:])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 6

    res = tmp_path / "resources"
    exported = run("-m", "panther_seg.training.export", str(run_dir / "best.ckpt"), "--stats", str(preprocessed / STATS_FILE_NAME), "--out", str(res))
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in res.iterdir()) == ["SHA256SUMS", STATS_FILE_NAME, "segformer3d.pt"]
    loaded = load_checkpoint(res / "segformer3d.pt")
    assert loaded.kind == "project resource" and loaded.config["decoder_C"] == 32
    assert loaded.stats == read_stats_csv(preprocessed / STATS_FILE_NAME)
    assert loaded.contract == ModelContract()  # trained with the original protocol's preprocessing
    prov = loaded.provenance
    assert {"val/dice_tumour", "val/dice_pancreas", "val/dice_mean"} <= set(prov["validation_metrics"])
    assert prov["config"]["window"] == [16, 32, 32] and prov["data"]["fold"] == 0 and prov["export_git_revision"]

    image = dataset / "imagesTr" / "90001_0001_0000.mha"
    masks = tmp_path / "masks"
    inferred = run("process.py", "--batch", str(image), "--output-dir", str(masks), "--checkpoint", str(res / "segformer3d.pt"), "--fast")
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    (mask,) = masks.iterdir()
    assert sitk.ReadImage(str(mask)).GetSize() == sitk.ReadImage(str(image)).GetSize()


def test_run_all_with_ddp_on_two_cpu_processes(dataset: Path, tmp_path: Path) -> None:
    """Lightning DDP (gloo) with --devices 2: no code change, just the flag. Fold 1 has one
    validation case, which the sampler hands to both processes: it still counts once."""
    out = tmp_path / "out"
    result = run("-m", "panther_seg.training.run_all", "--data", str(dataset), "--out", str(out), "--workers", "1",
                 "--fold", "1", "--devices", "2", "--accelerator", "cpu", "--set", *[s for s in TINY if not s.startswith("max_steps")], "max_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "run_fold1" / "result.json").read_text())["steps"] == 2
    loaded = load_checkpoint(out / "resources" / "segformer3d.pt")
    assert loaded.kind == "project resource"
    assert len(loaded.provenance["data"]["val_cases"]) == 1
    assert loaded.provenance["validation_metrics"]["val/cases"] == 1
