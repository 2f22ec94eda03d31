"""Synthetic data, preprocessing, the training recipe, DDP, resume, export and the exported files
in inference.

Small on purpose (tiny volumes and network, a few steps, one torch thread): the whole file runs
in about two minutes on two CPU cores. Everything not overridden in SMALL is the default recipe."""
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
import torch
from conftest import requires_shared

from panther_seg.contract.checkpoint import ModelContract, load_checkpoint
from panther_seg.contract.resources import verify_sha256sums
from panther_seg.config import PROJECT_ROOT, STATS_FILE_NAME
from panther_seg.errors import InputError
from panther_seg.contract.stats import HEADER, read_stats_csv
from panther_seg.tools.synthetic import make_case, write_dataset
from panther_seg.training import export, preprocess, run_all, splits, store, train
from panther_seg.training.config import load_config, parse_set
from panther_seg.training.data import CaseSource, EpochSampler, PatchDataset, ShardSampler, train_transforms
from panther_seg.training.module import lr_factor, mean_dice_over_cases
from panther_seg.training.splits import ORIGINAL_SPLIT, SPLIT_FILE_NAME, choose_split, make_splits, read_split, read_splits
from panther_seg.dice import dice

SHAPE = (16, 48, 64)
SMALL = ["window=[16,32,32]", "val_window=[16,32,32]", "warmup_steps=2", "num_workers=1",
         "model.embed_dims=[16,32,64,128]", "model.num_heads=[1,2,4,8]", "model.decoder_C=32"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
NO_AUG = ["aug.rotate_prob=0", "aug.zoom_prob=0", "aug.noise_prob=0", "aug.smooth_prob=0", "aug.scale_intensity_prob=0",
          "aug.contrast_prob=0", "aug.low_res_prob=0", "aug.gamma_prob=0", "aug.mirror_prob=0"]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def train_cmd(data: Path, split: Path, out: Path, *sets: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return run("-m", "panther_seg.training.train", "--data", str(data), "--split", str(split), "--out", str(out),
               "--accelerator", "cpu", *extra, "--set", *SMALL, *sets)


def samples(run_dir: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((run_dir / "samples").glob("rank*.jsonl")) for line in p.read_text().splitlines()]


def validations(run_dir: Path) -> list[dict]:
    header, *rows = (run_dir / "validations.csv").read_text().splitlines()
    return [dict(zip(header.split(","), map(float, r.split(",")))) for r in rows]


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(w in last for w in words), result.stderr[-2000:]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    write_dataset(out, 4, seed=1, shape_zyx=SHAPE)
    assert splits.main([str(out)]) == 0  # DATA/splits_final.json: 3 folds by case id
    return out


@pytest.fixture(scope="module")
def preprocessed(dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("preprocessed")
    preprocess.preprocess_dataset(dataset, out, workers=1)
    return out


def write_split(path: Path, train: list[str], val: list[str]) -> Path:
    path.write_text(json.dumps([{"train": train, "val": val}]))
    return path


# ----------------------------------------------------------------------------- data and splits


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


def test_splits_are_by_case_id(tmp_path: Path) -> None:
    splits = make_splits([f"c{i}" for i in range(7)], 3)
    assert len(splits) == 3
    assert sorted(c for s in splits for c in s["val"]) == [f"c{i}" for i in range(7)]
    for s in splits:
        assert not set(s["train"]) & set(s["val"])
    assert make_splits([f"c{i}" for i in reversed(range(7))], 3) == splits
    with pytest.raises(InputError, match="trains and validates on"):
        read_splits(write_split(tmp_path / "bad.json", ["a", "b"], ["b"]))


def test_original_split_is_shipped_and_is_the_default_for_panther_data(tmp_path: Path) -> None:
    train, val = read_split(ORIGINAL_SPLIT, 0)
    assert (len(train), len(val)) == (73, 19) and not set(train) & set(val)
    panther = train + val
    assert choose_split(None, panther, [tmp_path], tmp_path)[0] == ORIGINAL_SPLIT
    assert choose_split("original", ["x"], [tmp_path], tmp_path)[0] == ORIGINAL_SPLIT
    generated, reason = choose_split(None, panther[:-1], [tmp_path / "data"], tmp_path / "out")  # not all of PANTHER's cases
    assert generated == tmp_path / "out" / SPLIT_FILE_NAME and "3 folds" in reason
    assert read_splits(generated) == make_splits(panther[:-1], 3)
    beside = write_split(tmp_path / SPLIT_FILE_NAME, ["a"], ["b"])
    assert choose_split(None, ["a", "b"], [tmp_path], tmp_path / "out")[0] == beside


def test_shipped_split_holds_the_original_case_ids() -> None:
    reference = json.loads(requires_shared("panther", "original_fold0_split.json").read_text())
    assert read_splits(ORIGINAL_SPLIT) == reference


def test_reads_the_organisers_split() -> None:
    folds = read_splits(requires_shared("panther", "task1_splits_final.json"))
    assert len(folds) == 3
    assert sorted(c for f in folds for c in f["val"]) == sorted(read_split(ORIGINAL_SPLIT, 0)[0] + read_split(ORIGINAL_SPLIT, 0)[1])


def test_config_defaults_are_the_original_recipe_and_overrides_are_checked(tmp_path: Path) -> None:
    cfg = load_config()
    assert (cfg.seed, cfg.precision, cfg.deterministic, cfg.val_every_n_epochs, cfg.case_repeats) == (17, "32-true", True, 1, 1)
    assert cfg.image_threshold == 0.0 and cfg.class_ratios == (0.2, 0.3, 0.5) and cfg.batch_size == 2
    assert (cfg.aug.rotate_padding, cfg.aug.zoom_padding, cfg.aug.contrast_fixed_mean, cfg.aug.gamma_retain_stats) == ("border", "edge", False, False)
    cfg = load_config(None, ["lr=1e-3", "window=[16,32,32]", "aug.rotate_prob=0", "model.decoder_C=32", "num_workers=3", "precision=bf16-mixed"])
    assert cfg.lr == 1e-3 and cfg.window == (16, 32, 32) and cfg.aug.rotate_prob == 0 and cfg.model == {"decoder_C": 32}
    assert cfg.num_workers == 3 and cfg.precision == "bf16-mixed" and cfg.warmup_steps == 9000
    assert parse_set(["a.b=[1, 2]"]) == {"a": {"b": [1, 2]}}
    for bad in (["nope=1"], ["max_steps=1.5"], ["window=[1,2]"], ["lr"], ["precision=fp8"], ["num_workers=-1"], ["aug.rotate_padding=wrap"]):
        with pytest.raises(InputError, match="^--set: "):
            load_config(None, bad)
    file = tmp_path / "cfg.yaml"
    file.write_text("batch_size: many\n")
    with pytest.raises(InputError, match="cfg.yaml: batch_size"):
        load_config(file)


def test_learning_rate_schedule() -> None:
    assert lr_factor(0, 10, 110, 0.9) == pytest.approx(0.1)
    assert lr_factor(9, 10, 110, 0.9) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110, 0.9) == pytest.approx(0.5**0.9)
    assert lr_factor(200, 10, 110, 0.9) == 0.0


def test_validation_dice_on_tensors_counts_each_case_once() -> None:
    """DDP's shards repeat cases to even out the processes: case 0 scored twice counts once."""
    rows = np.array([[0, 0.2, 0.4], [1, 0.8, 0.6], [0, 0.2, 0.4]])
    assert mean_dice_over_cases(rows) == pytest.approx((0.5, 0.5, 2))
    assert mean_dice_over_cases(np.zeros((0, 3))) == (0.0, 0.0, 0)
    a = torch.zeros(4, 4, dtype=torch.bool)
    assert float(dice(a, a)) == 1.0  # nothing to find, nothing found
    b = a.clone()
    a[0, :2], b[0, 1:4] = True, True
    assert float(dice(a, b)) == pytest.approx(2 * 1 / 5)
    assert ShardSampler(3, 0, 2).indices == [0, 2] and ShardSampler(3, 1, 2).indices == [1, 0]


def test_an_epoch_visits_every_case_and_processes_share_each_step() -> None:
    one = EpochSampler(73, 1, 2, seed=17)
    first = list(one)
    assert len(first) == 74 and one.steps == 37  # 73 cases in full steps of 2: one case twice, with another patch
    assert {c for _, _, c in first} == set(range(73))
    assert [p for _, p, _ in first] == list(range(74))
    one.set_epoch(1)
    assert [c for _, _, c in one] != [c for _, _, c in first]  # a new order every epoch ...
    one.set_epoch(0)
    assert list(one) == first  # ... drawn from (seed, epoch) alone
    ranks = [EpochSampler(73, 1, 2, seed=17, rank=r, world=2) for r in range(2)]
    shares = [list(s) for s in ranks]
    assert len(shares[0]) == len(shares[1]) == 37  # the same number of steps on every process
    for step in range(37):  # step s: process r takes position 2s + r, the single process takes both
        assert sorted([shares[0][step], shares[1][step]]) == first[2 * step: 2 * step + 2]
    with pytest.raises(ValueError, match="multiple of --devices"):
        EpochSampler(73, 1, 2, seed=17, rank=0, world=3)


def test_patches_are_keyed_to_epoch_and_position(preprocessed: Path) -> None:
    cfg = load_config(None, SMALL)
    source = CaseSource([store.case_dir(preprocessed, "90001_0001")])
    ds = PatchDataset(source, train_transforms(cfg), cfg.seed)
    a, b, a_again = ds[(0, 5, 0)], ds[(0, 6, 0)], ds[(0, 5, 0)]
    fresh = PatchDataset(CaseSource(source.folders), train_transforms(cfg), cfg.seed)[(0, 5, 0)]
    assert torch.equal(a["image"], a_again["image"]) and torch.equal(a["image"], fresh["image"])
    assert a["seed"] != b["seed"] and not torch.equal(a["image"], b["image"])
    assert not torch.equal(a["image"], ds[(1, 5, 0)]["image"])  # another epoch, another patch
    assert a["label"].dtype == torch.uint8 and tuple(a["image"].shape) == (1, 16, 32, 32)


def test_patch_centres_lie_where_the_normalised_image_is_above_zero(tmp_path: Path) -> None:
    image = np.ones((1, 32, 32, 32), np.float32)
    image[:, :8] = -1.0  # "below the mean": never a centre, whatever its class
    label = np.zeros((1, 32, 32, 32), np.uint8)
    label[:, 2:20, 10:20, 10:20] = 2
    label[:, 4:12, 12:16, 12:16] = 1
    store.write_case(tmp_path / "c", image, label, {"spacing": [3.0, 1.0, 1.0], "stats": ""})
    cfg = load_config(None, ["window=[4,4,4]", *NO_AUG])
    ds = PatchDataset(CaseSource([tmp_path / "c"]), train_transforms(cfg), cfg.seed)
    centres = np.array([ds[(0, p, 0)]["centre"].numpy() for p in range(60)])
    assert centres[:, 0].min() >= 8
    classes = [label[0, z, y, x] for z, y, x in centres]
    assert {0, 1, 2} <= set(classes)  # background, tumour and pancreas centres all drawn


def test_augmentations_follow_the_original(preprocessed: Path) -> None:
    source = CaseSource([store.case_dir(preprocessed, "90001_0001")])
    plain = load_config(None, [*SMALL, *NO_AUG])
    base = PatchDataset(source, train_transforms(plain), plain.seed)
    contrast = load_config(None, [*SMALL, *NO_AUG, "aug.contrast_prob=1"])
    ds = PatchDataset(source, train_transforms(contrast), contrast.seed)
    for p in range(3):  # contrast: the patch times one factor, clipped to the patch's range (no mean kept)
        x, y = base[(0, p, 0)]["image"], ds[(0, p, 0)]["image"]
        inside = (y > x.min()) & (y < x.max()) & (x.abs() > 0.1)
        ratio = y[inside] / x[inside]
        assert float(ratio.std()) < 1e-4 and 0.65 <= float(ratio.mean()) <= 1.5
        assert float(y.min()) >= float(x.min()) - 1e-6 and float(y.max()) <= float(x.max()) + 1e-6
    rotated = {pad: PatchDataset(source, train_transforms(load_config(None, [*SMALL, *NO_AUG, "aug.rotate_prob=1", f"aug.rotate_padding={pad}"])), 17)
               for pad in ("border", "zeros")}
    zeros = {pad: sum(int((ds[(0, p, 0)]["image"] == 0).sum()) for p in range(4)) for pad, ds in rotated.items()}
    assert zeros["border"] == 0 < zeros["zeros"]  # border padding repeats the edge, never fills in zeros
    gamma = [t for t in train_transforms(load_config()).transforms if type(t).__name__ == "RandAdjustContrastd"]
    assert len(gamma) == 2 and not any(t.adjuster.retain_stats for t in gamma)


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
    assert sorted(p.name for p in out.iterdir() if store.is_case(p)) == ["90000_0001", "90001_0001"]
    case = store.open_case(out / "90000_0001")  # memory-mapped, not loaded
    img, lab = case["image"], case["label"]
    assert isinstance(img, np.memmap) and isinstance(lab, np.memmap)
    assert img.dtype == np.float32 and lab.dtype == np.uint8 and img.ndim == lab.ndim == 4
    assert img.shape == lab.shape and img.shape[0] == 1 and set(np.unique(lab)) <= {0, 1, 2}
    assert store.read_meta(out / "90000_0001")["spacing"] == pytest.approx(stats.target_spacing()[::-1])
    assert abs(float(img[img != 0].mean())) < 0.05  # z-scored
    before = (out / "90000_0001" / store.META_FILE).stat().st_mtime_ns
    _, cases, problems = preprocess.preprocess_dataset(data, out, workers=1)
    assert cases == ["90000_0001", "90001_0001"] and len(problems) == 1
    assert (out / "90000_0001" / store.META_FILE).stat().st_mtime_ns == before  # up to date: not rewritten


# ----------------------------------------------------------------------------- training runs


def test_default_recipe_trains_validates_per_epoch_resumes_exactly_and_exports(dataset: Path, preprocessed: Path, tmp_path: Path) -> None:
    """Two epochs straight, and one epoch then --resume for the second: the same patches, the
    same validations and bit-identical weights (CPU, one thread)."""
    split = dataset / SPLIT_FILE_NAME  # fold 0: 2 training cases, 2 validation cases
    sets = ("case_repeats=2", "sample_log=true")  # 2 steps per epoch
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = train_cmd(preprocessed, split, straight, *sets, "max_steps=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert train_cmd(preprocessed, split, resumed, *sets, "max_steps=2").returncode == 0
    again = train_cmd(preprocessed, split, resumed, *sets, "max_steps=4", extra=("--resume",))
    assert again.returncode == 0, again.stderr[-3000:]

    assert [(v["epoch"], v["step"]) for v in validations(straight)] == [(0, 2), (1, 4)]  # a validation per epoch
    assert validations(resumed) == validations(straight)
    assert samples(resumed) == samples(straight) and len(samples(straight)) == 8
    a, b = (torch.load(d / "last.ckpt", map_location="cpu", weights_only=True) for d in (straight, resumed))
    assert a["global_step"] == b["global_step"] == 4
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    info = json.loads((resumed / "run.json").read_text())
    assert info["seed"] == 17 and len(info["resumed"]) == 1 and info["val_cases"] == read_split(split, 0)[1]
    assert info["steps_per_epoch"] == 2 and (straight / "config.yaml").is_file() and list((straight / "logs").glob("events.out.tfevents.*"))
    one_line_error(train_cmd(preprocessed, split, resumed, *sets), "holds a run already")

    res = tmp_path / "resources"
    exported = run("-m", "panther_seg.training.export", str(straight / "best.ckpt"), "--stats", str(preprocessed / STATS_FILE_NAME), "--out", str(res))
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in res.iterdir()) == ["SHA256SUMS", "fold0.pt", STATS_FILE_NAME]
    verify_sha256sums(res)
    loaded = load_checkpoint(res / "fold0.pt")
    assert loaded.kind == "project resource" and loaded.config["decoder_C"] == 32
    assert loaded.stats == read_stats_csv(preprocessed / STATS_FILE_NAME)
    assert loaded.contract == ModelContract(window=(16, 32, 32))  # its validation window; the original preprocessing
    prov = loaded.provenance
    assert {"val/dice_tumour", "val/dice_pancreas", "val/dice_mean"} <= set(prov["validation_metrics"])
    assert prov["config"]["window"] == [16, 32, 32] and prov["data"]["fold"] == 0 and prov["export_git_revision"]
    assert prov["ensemble"]["members"] == ["fold0.pt"]

    image = dataset / "imagesTr" / "90001_0001_0000.mha"
    masks = tmp_path / "masks"
    inferred = run("process.py", "--batch", str(image), "--output-dir", str(masks), "--checkpoint", str(res / "fold0.pt"), "--fast")
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    (mask,) = masks.iterdir()
    assert sitk.ReadImage(str(mask)).GetSize() == sitk.ReadImage(str(image)).GetSize()


def test_ddp_processes_draw_distinct_patches_on_the_single_process_schedule(dataset: Path, preprocessed: Path, tmp_path: Path) -> None:
    """One training case, patches of the same case on both processes at every step: they must
    differ (the processes do not share a random stream), and together be exactly the single
    process's patches, steps, learning rates and validations. One validation case, scored by
    both processes, counts once."""
    split = write_split(tmp_path / "split.json", ["90000_0001"], ["90001_0001"])
    sets = ("case_repeats=4", "max_steps=4", "sample_log=true")
    single = train_cmd(preprocessed, split, tmp_path / "single", *sets)
    assert single.returncode == 0, single.stderr[-3000:]
    out = tmp_path / "ddp"
    result = run("-m", "panther_seg.training.run_all", "--data", str(dataset), "--out", str(out), "--workers", "1", "--split", str(split),
                 "--devices", "2", "--accelerator", "cpu", "--set", *SMALL, *sets)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp_dir = out / "run_fold0"
    one, two = samples(tmp_path / "single"), samples(ddp_dir)
    assert {s["rank"] for s in two} == {0, 1}
    by_step = {}
    for s in two:
        by_step.setdefault(s["step"], {})[s["rank"]] = s
    assert sorted(by_step) == [0, 1, 2, 3]
    for pair in by_step.values():
        r0, r1 = pair[0], pair[1]
        assert r0["case_index"] == r1["case_index"] and r0["seed"] != r1["seed"]
        assert (r0["centre"], r0["digest"]) != (r1["centre"], r1["digest"])  # different patches of the same case
    key = lambda s: (s["epoch"], s["position"])  # noqa: E731
    strip = lambda s: {k: v for k, v in s.items() if k != "rank"}  # noqa: E731
    assert [strip(s) for s in sorted(two, key=key)] == [strip(s) for s in sorted(one, key=key)]
    v1, v2 = validations(tmp_path / "single"), validations(ddp_dir)
    assert [(v["epoch"], v["step"], v["lr"]) for v in v2] == [(v["epoch"], v["step"], v["lr"]) for v in v1] == [(0, 2, v1[0]["lr"]), (1, 4, v1[1]["lr"])]
    assert [v["cases"] for v in v2] == [1, 1]
    assert json.loads((ddp_dir / "result.json").read_text())["steps"] == 4
    assert json.loads((ddp_dir / "run.json").read_text())["devices"] == 2
    loaded = load_checkpoint(out / "resources" / "fold0.pt")
    assert loaded.provenance["validation_metrics"]["val/cases"] == 1


def test_run_all_trains_every_fold_into_one_ensemble_folder(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("-m", "panther_seg.training.run_all", "--data", str(dataset), "--out", str(out), "--workers", "1", "--accelerator", "cpu")
    sets = ("--set", *SMALL, "max_steps=2", "num_workers=0")
    result = run(*args, *sets)
    assert result.returncode == 0, result.stderr[-3000:]
    res = out / "resources"
    assert sorted(p.name for p in res.iterdir()) == ["SHA256SUMS", "fold0.pt", "fold1.pt", "fold2.pt", STATS_FILE_NAME]
    verify_sha256sums(res)
    folds = read_splits(dataset / SPLIT_FILE_NAME)
    for k in range(3):
        prov = load_checkpoint(res / f"fold{k}.pt").provenance
        assert prov["data"]["fold"] == k and prov["data"]["val_cases"] == folds[k]["val"]
        assert prov["ensemble"]["members"] == ["fold0.pt", "fold1.pt", "fold2.pt"]
        assert prov["data"]["split"] == str((dataset / SPLIT_FILE_NAME).resolve())
    finished = [(out / f"run_fold{k}" / "result.json").stat().st_mtime_ns for k in range(3)]
    again = run(*args, "--resume", *sets)
    assert again.returncode == 0 and again.stdout.count("finished already") == 3, again.stderr[-3000:]
    assert [(out / f"run_fold{k}" / "result.json").stat().st_mtime_ns for k in range(3)] == finished


def test_benchmark_reports_data_and_training_steps_per_second(dataset: Path, preprocessed: Path) -> None:
    result = run("-m", "panther_seg.training.train", "--data", str(preprocessed), "--split", str(dataset / SPLIT_FILE_NAME),
                 "--out", "unused", "--accelerator", "cpu", "--benchmark-data", "2", "--set", *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["data_steps_per_s"] > 0 and report["train_steps_per_s"] > 0
    assert report["device"] == "cpu" and report["num_workers"] == 1 and "cores" in report["machine"]
    assert not (PROJECT_ROOT / "unused").exists()


def test_bad_inputs_are_one_line_errors(dataset: Path, preprocessed: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """In this process (the commands' ``main``): every check runs before any training starts."""
    split = dataset / SPLIT_FILE_NAME

    def error(main, *args: str) -> str:
        assert main(list(args)) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("error: "), lines
        return lines[-1]

    common = ("--data", str(preprocessed), "--split", str(split), "--accelerator", "cpu")
    assert "--set: unknown setting 'nope'" in error(train.main, *common, "--out", str(tmp_path / "a"), "--set", "nope=1")
    assert "batch_size 2 cannot be shared by 3" in error(train.main, *common, "--out", str(tmp_path / "b"), "--devices", "3")
    assert f"{split}: no fold 7" in error(train.main, *common, "--out", str(tmp_path / "c"), "--fold", "7")
    assert "missing: preprocessed data folder does not exist" in error(train.main, "--data", str(tmp_path / "missing"), "--split", str(split), "--out", str(tmp_path / "d"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    assert f"{junk}: cannot load checkpoint" in error(export.main, str(junk), "--stats", str(preprocessed / STATS_FILE_NAME), "--out", str(tmp_path / "r"))
    assert "no fold 5" in error(run_all.main, "--data", str(dataset), "--out", str(tmp_path / "o"), "--workers", "1", "--folds", "5")
    assert not any((tmp_path / d).exists() for d in "abcdr")  # nothing written
