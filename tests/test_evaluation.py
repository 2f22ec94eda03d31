"""The evaluation command against DeepMind's `surface-distance`, the organisers' reference.

Our metrics are our own numpy/scipy code; here every one of them is checked against the
library on random and hand-made masks, in both spacing modes, Dice and surface Dice also against
grand-challenge-metrics (evalutils) and MONAI, and the command is run on real files written to a
temporary folder.
"""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from panther_seg.evaluation import cli as evaluate
from panther_seg.evaluation import metrics

# surface-distance 0.1 uses np.Inf / np.NaN, which numpy 2 removed; restore them for it only.
for _alias, _value in (("Inf", np.inf), ("NaN", np.nan)):
    if not hasattr(np, _alias):
        setattr(np, _alias, _value)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import surface_distance as sd_lib

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPACING_XYZ = (0.8, 1.3, 3.0)  # anisotropic, and different along every axis
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore:invalid value:RuntimeWarning",
                                        "ignore:divide by zero:RuntimeWarning")


def library_metrics(gt: np.ndarray, pred: np.ndarray, spacing) -> dict[str, float]:
    """Every metric as the organisers' library computes it."""
    distances = sd_lib.compute_surface_distances(gt, pred, tuple(spacing))
    gt_to_pred, pred_to_gt = sd_lib.compute_average_surface_distance(distances)
    return {
        "dice": sd_lib.compute_dice_coefficient(gt, pred),
        "surface_dice": sd_lib.compute_surface_dice_at_tolerance(distances, 5.0),
        "hd95_mm": sd_lib.compute_robust_hausdorff(distances, 95.0),
        "asd_gt_to_pred": gt_to_pred,
        "asd_pred_to_gt": pred_to_gt,
        "masd_mm": (gt_to_pred + pred_to_gt) / 2.0,
    }


def our_metrics(gt: np.ndarray, pred: np.ndarray, spacing) -> dict[str, float]:
    distances = metrics.surface_distances(gt, pred, spacing)
    gt_to_pred, pred_to_gt = metrics.average_surface_distances(distances)
    return {
        "dice": float(metrics.dice(gt, pred)),
        "surface_dice": metrics.surface_dice(distances),
        "hd95_mm": metrics.robust_hausdorff(distances),
        "asd_gt_to_pred": gt_to_pred,
        "asd_pred_to_gt": pred_to_gt,
        "masd_mm": metrics.mean_average_surface_distance(distances),
    }


def assert_same(ours: dict[str, float], theirs: dict[str, float]) -> None:
    for name, expected in theirs.items():
        np.testing.assert_allclose(ours[name], expected, rtol=1e-10, atol=0, equal_nan=True,
                                   err_msg=name)


def blob(shape: tuple[int, int, int], centre, radii) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def write_volume(path: Path, array: np.ndarray, spacing_xyz=SPACING_XYZ) -> Path:
    """A real image file, array in (z, y, x) order as SimpleITK stores it."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(v) for v in spacing_xyz))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("spacing", [(3.0, 1.1875, 1.1875), (1.1875, 1.1875, 3.0), (0.7, 2.1, 1.3)])
def test_random_masks_match_library(seed: int, spacing) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(5, 15, size=3))
    gt = rng.random(shape) < rng.uniform(0.1, 0.6)
    pred = rng.random(shape) < rng.uniform(0.1, 0.6)
    assert_same(our_metrics(gt, pred, spacing), library_metrics(gt, pred, spacing))


@pytest.mark.parametrize("spacing", [(3.0, 1.19, 1.19), (1.19, 1.19, 3.0), (1.0, 1.0, 1.0)])
def test_hand_made_masks_match_library(spacing) -> None:
    shape = (14, 22, 26)
    sphere = blob(shape, (7, 11, 12), (4, 7, 8))
    shifted = np.roll(sphere, 2, axis=0)
    cube = np.zeros(shape, dtype=bool)
    cube[3:9, 5:15, 6:20] = True
    touching_border = np.zeros(shape, dtype=bool)
    touching_border[:5, :, 10:] = True
    for gt, pred in ((sphere, shifted), (sphere, cube), (cube, touching_border), (sphere, sphere)):
        assert_same(our_metrics(gt, pred, spacing), library_metrics(gt, pred, spacing))


@pytest.mark.parametrize("seed", range(3))
def test_dice_and_surface_dice_match_evalutils_and_monai(seed: int) -> None:
    """The two libraries the issue names compute two of the metrics, in float32 (which is why
    scores come from our float64 code, held to surface-distance above to 1e-10): they must
    agree to float32 precision."""
    from grand_challenge_metrics.stats import calculate_confusion_matrix, dice_from_confusion_matrix
    from monai.metrics import compute_surface_dice
    import torch

    rng = np.random.default_rng(seed)
    shape = (16, 30, 34)
    gt = blob(shape, rng.uniform(5, 11, 3), rng.uniform(3, 8, 3))
    pred = blob(shape, rng.uniform(5, 11, 3), rng.uniform(3, 8, 3))
    spacing = (3.0, 1.1875, 0.9)

    confusion = calculate_confusion_matrix(gt.astype(np.uint8), pred.astype(np.uint8), [0, 1])
    assert metrics.dice(gt, pred) == pytest.approx(float(dice_from_confusion_matrix(confusion)[1]), rel=1e-6)

    def one_hot(mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        monai_value = compute_surface_dice(one_hot(pred), one_hot(gt), [5.0], spacing=spacing,
                                           use_subvoxels=True).item()
    ours = metrics.surface_dice(metrics.surface_distances(gt, pred, spacing))
    assert 0.0 < ours < 1.0
    assert ours == pytest.approx(monai_value, rel=1e-6)


def test_hand_made_values() -> None:
    """Known answers: identical masks agree perfectly; a shift of one slice is one z spacing."""
    shape = (12, 16, 16)
    cube = np.zeros(shape, dtype=bool)
    cube[3:8, 4:12, 4:12] = True
    same = our_metrics(cube, cube, (3.0, 1.2, 1.2))
    assert (same["dice"], same["surface_dice"], same["hd95_mm"], same["masd_mm"]) == (1, 1, 0, 0)
    shifted = our_metrics(cube, np.roll(cube, 1, axis=0), (3.0, 1.2, 1.2))
    assert shifted["hd95_mm"] == pytest.approx(3.0)
    assert shifted["dice"] == pytest.approx(0.8)


@pytest.mark.parametrize("case", ["gt_empty", "pred_empty", "both_empty", "gt_full", "pred_full",
                                  "both_full"])
def test_empty_and_full_masks_match_library(case: str) -> None:
    shape = (6, 9, 11)
    some = blob(shape, (3, 4, 5), (2, 3, 3))
    empty, full = np.zeros(shape, dtype=bool), np.ones(shape, dtype=bool)
    gt, pred = {"gt_empty": (empty, some), "pred_empty": (some, empty),
                "both_empty": (empty, empty), "gt_full": (full, some),
                "pred_full": (some, full), "both_full": (full, full)}[case]
    spacing = (3.0, 1.19, 0.9)
    expected = library_metrics(gt, pred, spacing)
    if case == "both_empty":  # the library's NaN; the project's one Dice says two empty masks agree
        assert np.isnan(expected["dice"])  # (the challenge never asks: an empty prediction scores 0 first)
        expected["dice"] = 1.0
    assert_same(our_metrics(gt, pred, spacing), expected)


def test_uniform_prediction_is_penalised() -> None:
    ref = blob((6, 9, 11), (3, 4, 5), (2, 3, 3))
    spacing = (3.0, 1.2, 0.9)
    diagonal = math.sqrt((6 * 3.0) ** 2 + (9 * 1.2) ** 2 + (11 * 0.9) ** 2)
    for pred in (np.zeros_like(ref), np.ones_like(ref)):
        result = metrics.case_metrics(pred, ref, spacing)
        assert (result.dice, result.surface_dice, result.pred_volume_mm3) == (0.0, 0.0, 0.0)
        assert result.hd95_mm == result.masd_mm == pytest.approx(diagonal)
        assert result.uniform_prediction


@pytest.mark.parametrize("values, expected", [
    ([0, 0], [0, 0]), ([1, 1], [1, 1]), ([0, 1], [0, 1]), ([0, 255], [0, 1]), ([2, 0], [1, 0])])
def test_binarisation_accepts(values, expected) -> None:
    np.testing.assert_array_equal(metrics.binarise_prediction(np.array(values)), expected)


@pytest.mark.parametrize("values", [[0, 1, 2], [1, 2], [5, 5], [0.0, 0.5, 1.0]])
def test_binarisation_refuses(values) -> None:
    with pytest.raises(metrics.EvaluationError, match="not binary"):
        metrics.binarise_prediction(np.array(values))


@pytest.fixture()
def dataset(tmp_path: Path) -> dict[str, object]:
    """Three cases on disk: a normal one, a {0, 255} prediction named like the image, and an
    empty prediction; references hold pancreas (2) around the tumour (1)."""
    shape = (10, 20, 24)
    rng = np.random.default_rng(7)
    refs, preds = {}, {}
    for index, case in enumerate(("10000_0001", "10001_0001", "10002_0001")):
        tumour = blob(shape, (5, 9 + index, 11), (3, 5, 6))
        pancreas = blob(shape, (5, 10, 12), (4, 8, 10)) & ~tumour
        labels = tumour.astype(np.uint8) + 2 * pancreas.astype(np.uint8)
        pred = blob(shape, (5 + index % 2, 10, 12 - index), (3, 4 + index, 6))
        pred &= rng.random(shape) < 0.9
        if index == 2:
            pred[:] = False
        refs[case], preds[case] = tumour, pred
        write_volume(tmp_path / "ref" / f"{case}.mha", labels)
        pred_name = f"{case}_0000.nii.gz" if index == 1 else f"{case}.mha"
        foreground = 255 if index == 1 else 1
        write_volume(tmp_path / "pred" / pred_name, pred.astype(np.uint8) * foreground)
        write_volume(tmp_path / "images" / f"{case}_0000.mha",
                     rng.normal(200, 60, shape).astype(np.float32))
    return {"root": tmp_path, "refs": refs, "preds": preds, "shape": shape}


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as stream:
        return {row["case"]: row for row in csv.DictReader(stream)}


@pytest.mark.parametrize("official", [False, True])
def test_cli_writes_csv_and_json_matching_library(dataset, official: bool, capsys) -> None:
    root = dataset["root"]
    out = root / "out"
    argv = [str(root / "pred"), str(root / "ref"), "-o", str(out)]
    argv += ["--official"] if official else []
    assert evaluate.main(argv) == 0
    assert "tumour-burden RMSE" in capsys.readouterr().out
    rows = read_csv(out / evaluate.PER_CASE_FILE)
    assert sorted(rows) == sorted(dataset["refs"])
    # the quirk: SimpleITK's (x, y, z) spacing with the (z, y, x) array
    spacing = SPACING_XYZ if official else SPACING_XYZ[::-1]
    voxel = float(np.prod(SPACING_XYZ))
    for case, ref in dataset["refs"].items():
        pred, row = dataset["preds"][case], rows[case]
        assert float(row["ref_volume_mm3"]) == pytest.approx(ref.sum() * voxel)
        if not pred.any():
            diagonal = float(np.linalg.norm(np.multiply(dataset["shape"], spacing)))
            assert row["uniform_prediction"] == "True"
            assert [float(row[k]) for k in ("dice", "surface_dice", "pred_volume_mm3")] == [0, 0, 0]
            assert float(row["hd95_mm"]) == float(row["masd_mm"]) == pytest.approx(diagonal)
            continue
        expected = library_metrics(ref, pred, spacing)
        for name in ("dice", "surface_dice", "hd95_mm", "masd_mm"):
            assert float(row[name]) == pytest.approx(expected[name], rel=1e-10), name
        assert float(row["pred_volume_mm3"]) == pytest.approx(pred.sum() * voxel)
    summary = json.loads((out / evaluate.SUMMARY_FILE).read_text())
    assert summary["mode"] == ("official" if official else "physical")
    assert summary["n_cases"] == 3 and summary["n_uniform_predictions"] == 1
    assert summary["mean_dice"] == pytest.approx(np.mean([float(r["dice"]) for r in rows.values()]))
    errors = [float(r["pred_volume_mm3"]) - float(r["ref_volume_mm3"]) for r in rows.values()]
    assert summary["tumour_burden_rmse_mm3"] == pytest.approx(math.sqrt(np.mean(np.square(errors))))


def test_official_mode_differs_from_physical(dataset) -> None:
    root = dataset["root"]
    evaluate.main([str(root / "pred"), str(root / "ref"), "-o", str(root / "a")])
    evaluate.main([str(root / "pred"), str(root / "ref"), "-o", str(root / "b"), "--official"])
    physical = read_csv(root / "a" / evaluate.PER_CASE_FILE)["10000_0001"]
    official = read_csv(root / "b" / evaluate.PER_CASE_FILE)["10000_0001"]
    assert physical["dice"] == official["dice"]
    assert physical["pred_volume_mm3"] == official["pred_volume_mm3"]
    assert physical["hd95_mm"] != official["hd95_mm"]


def test_module_entry_point_and_default_output_dir(dataset) -> None:
    root = dataset["root"]
    done = subprocess.run([sys.executable, "-m", "panther_seg.evaluation", str(root / "pred"),
                           str(root / "ref")], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (root / "evaluation" / evaluate.SUMMARY_FILE).is_file()
    assert "mean" in done.stdout


def test_preview_writes_valid_pngs(dataset) -> None:
    root = dataset["root"]
    out = root / "out"
    assert evaluate.main([str(root / "pred"), str(root / "ref"), "-o", str(out), "--preview",
                          "--images-dir", str(root / "images")]) == 0
    for case in dataset["refs"]:
        path = out / "preview" / f"{case}.png"
        with Image.open(path) as picture:
            picture.verify()
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.mode == "RGB"
            assert picture.width >= 3 * dataset["shape"][2]
            colours = np.asarray(picture).reshape(-1, 3)
            assert ((colours[:, 1] > 150) & (colours[:, 0] < 80)).any()  # reference outline
    assert not list(out.rglob("*.tmp"))


def test_preview_needs_images_dir(dataset) -> None:
    root = dataset["root"]
    with pytest.raises(SystemExit) as exited:
        evaluate.main([str(root / "pred"), str(root / "ref"), "--preview"])
    assert exited.value.code == 2


def run_failing(root: Path, capsys, *extra: str) -> str:
    """Run the command expecting refusal: exit 1, one stderr line, no output folder."""
    out = root / "out"
    assert evaluate.main([str(root / "pred"), str(root / "ref"), "-o", str(out), *extra]) == 1
    captured = capsys.readouterr()
    message = captured.err.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error: ")
    assert not out.exists()
    return message


def test_shape_mismatch_is_refused(dataset, capsys) -> None:
    root = dataset["root"]
    bad = write_volume(root / "pred" / "10001_0001.mha", np.zeros((10, 20, 23), dtype=np.uint8))
    (root / "pred" / "10001_0001_0000.nii.gz").unlink()
    message = run_failing(root, capsys)
    assert str(bad) in message and "shape" in message


def test_spacing_mismatch_is_refused(dataset, capsys) -> None:
    root = dataset["root"]
    path = root / "pred" / "10000_0001.mha"
    write_volume(path, dataset["preds"]["10000_0001"].astype(np.uint8), (0.8, 1.3, 3.001))
    message = run_failing(root, capsys)
    assert str(path) in message and "spacing" in message


def test_spacing_within_tolerance_is_accepted(dataset) -> None:
    root = dataset["root"]
    path = root / "pred" / "10000_0001.mha"
    write_volume(path, dataset["preds"]["10000_0001"].astype(np.uint8), (0.8, 1.3, 3.00005))
    assert evaluate.main([str(root / "pred"), str(root / "ref"), "-o", str(root / "out")]) == 0


def test_non_binary_prediction_is_refused(dataset, capsys) -> None:
    root = dataset["root"]
    path = root / "pred" / "10002_0001.mha"
    labels = np.zeros(dataset["shape"], dtype=np.uint8)
    labels[2:4, 3:6, 3:6], labels[5:7, 3:6, 3:6] = 1, 2
    write_volume(path, labels)
    message = run_failing(root, capsys)
    assert str(path) in message and "not binary" in message


def test_missing_prediction_is_listed(dataset, capsys) -> None:
    root = dataset["root"]
    (root / "pred" / "10000_0001.mha").unlink()
    (root / "pred" / "10002_0001.mha").unlink()
    message = run_failing(root, capsys)
    assert "2 reference case(s): 10000_0001, 10002_0001" in message


def test_unreadable_and_2d_files_are_refused(dataset, capsys) -> None:
    root = dataset["root"]
    broken = root / "pred" / "10000_0001.mha"
    broken.write_bytes(b"not an image")
    assert str(broken) in run_failing(root, capsys)
    flat = write_volume(broken, np.zeros((20, 24), dtype=np.uint8), (0.8, 1.3))
    message = run_failing(root, capsys)
    assert str(flat) in message and "2D" in message


def test_empty_reference_gives_undefined_distances(dataset) -> None:
    """No reference surface: the library's inf/nan per case, null means in the JSON."""
    root = dataset["root"]
    write_volume(root / "ref" / "10000_0001.mha", np.zeros(dataset["shape"], dtype=np.uint8))
    assert evaluate.main([str(root / "pred"), str(root / "ref"), "-o", str(root / "out")]) == 0
    row = read_csv(root / "out" / evaluate.PER_CASE_FILE)["10000_0001"]
    assert (row["dice"], row["surface_dice"], row["hd95_mm"], row["masd_mm"]) == (
        "0.0", "0.0", "inf", "nan")
    summary = json.loads((root / "out" / evaluate.SUMMARY_FILE).read_text())
    assert summary["mean_hd95_mm"] is None and summary["mean_masd_mm"] is None
    assert summary["mean_dice"] is not None


def test_one_dice_for_numpy_and_torch_masks_with_empty_masks_agreeing():
    import torch

    from panther_seg.dice import dice

    a = np.zeros((4, 5, 6), bool)
    b = a.copy()
    a[1, 1:4, 2] = True
    b[1, 2:5, 2] = True
    assert float(dice(a, b)) == pytest.approx(2 * 2 / 6)
    assert float(dice(torch.from_numpy(a), torch.from_numpy(b))) == pytest.approx(2 * 2 / 6)
    empty = np.zeros_like(a)
    assert float(dice(empty, empty)) == 1.0 and float(dice(torch.from_numpy(empty), torch.from_numpy(empty))) == 1.0
    assert float(dice(a, empty)) == 0.0
