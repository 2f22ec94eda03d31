"""The command line as users and grand-challenge run it: outputs, batch mode, and every bad
input ending in one clear line, a non-zero exit and no output file."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import PANTHER_STATS, ROOT, blob_volume, gc_input, write_image
from model import SegFormer3D
from panther_seg.cli import main
from panther_seg.stats import write_stats_csv

GC_OUT = Path("images/pancreatic-tumor-segmentation/tumor_seg.mha")


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_gc_mode_writes_a_binary_mask_on_the_input_grid(tmp_path, small_checkpoint, capsys):
    inp = gc_input(tmp_path / "input", blob_volume((20, 64, 80)), spacing=(1.0, 1.0, 2.5), origin=(5.0, 6.0, 7.0))
    code, out, err = run(["--input-root", str(inp), "--output-root", str(tmp_path / "output"),
                          "--checkpoint", str(small_checkpoint), "--fast"], capsys)
    assert code == 0, err
    mask = sitk.ReadImage(str(tmp_path / "output" / GC_OUT))
    image = sitk.ReadImage(str(next((inp / "images" / "abdominal-t1-mri").iterdir())))
    assert mask.GetSize() == image.GetSize() and mask.GetSpacing() == image.GetSpacing()
    assert mask.GetOrigin() == image.GetOrigin() and mask.GetDirection() == image.GetDirection()
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(mask))) <= {0, 1}
    for expected in ("device cpu", "torch", "CUDA build", "input 3f2a9c1e-uuid.mha", "network", "peak host RAM"):
        assert expected in out
    assert err == ""
    assert files_under(tmp_path / "output") == [tmp_path / "output" / GC_OUT]  # no temporary files left


def test_the_mask_file_is_compressed(tmp_path, small_checkpoint, capsys):
    inp = gc_input(tmp_path / "input", blob_volume((20, 64, 80)))
    assert run(["--input-root", str(inp), "--output-root", str(tmp_path / "o"), "--checkpoint", str(small_checkpoint), "--fast"], capsys)[0] == 0
    header = (tmp_path / "o" / GC_OUT).read_bytes()[:400].decode("latin1")
    assert "CompressedData = True" in header


def test_folder_whose_name_contains_mri_is_found(tmp_path, small_checkpoint, capsys):
    write_image(tmp_path / "in" / "images" / "t1-mri-arterial" / "x.mha", blob_volume((16, 48, 64)))
    (tmp_path / "in" / "inputs.json").write_text("[]")
    code, _, err = run(["--input-root", str(tmp_path / "in"), "--output-root", str(tmp_path / "o"),
                        "--checkpoint", str(small_checkpoint), "--fast"], capsys)
    assert code == 0, err and (tmp_path / "o" / GC_OUT).is_file()


def test_batch_mode_writes_one_mask_per_input_in_its_format(tmp_path, small_checkpoint, capsys):
    write_image(tmp_path / "cases" / "a_0000.nii.gz", blob_volume((16, 48, 64), 1))
    write_image(tmp_path / "cases" / "b.nrrd", blob_volume((16, 48, 64), 2))
    write_image(tmp_path / "single" / "c.nii", blob_volume((16, 48, 64), 3).astype(np.float32))
    code, out, err = run(["--batch", str(tmp_path / "cases"), str(tmp_path / "single" / "c.nii"),
                          "--output-dir", str(tmp_path / "masks"), "--checkpoint", str(small_checkpoint), "--fast"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["a_0000.nii.gz", "b.nrrd", "c.nii"]
    assert "3 of 3 masks written" in out


def test_batch_mode_exits_non_zero_when_one_case_fails_but_writes_the_others(tmp_path, small_checkpoint, capsys):
    write_image(tmp_path / "cases" / "good.mha", blob_volume((16, 48, 64)))
    write_image(tmp_path / "cases" / "flat.mha", np.zeros((16, 48, 64), np.int16))
    code, out, err = run(["--batch", str(tmp_path / "cases"), "--output-dir", str(tmp_path / "masks"),
                          "--checkpoint", str(small_checkpoint), "--fast"], capsys)
    assert code == 1
    assert [p.name for p in (tmp_path / "masks").iterdir()] == ["good.mha"]
    assert "flat.mha: image is constant" in err and "1 of 2 masks written" in out


def write_mha_with_spacing(path: Path, spacing: str) -> None:
    """sitk refuses to write a non-positive spacing: patch the header of an uncompressed file."""
    write_image(path, blob_volume((8, 16, 16)))
    image = sitk.ReadImage(str(path))
    sitk.WriteImage(image, str(path), useCompression=False)
    data = path.read_bytes()
    start = data.index(b"ElementSpacing = ")
    end = data.index(b"\n", start)
    path.write_bytes(data[:start] + f"ElementSpacing = {spacing}".encode() + data[end:])


def bad_inputs() -> dict[str, tuple]:
    """name -> (builder(tmp) -> extra argv, expected message fragment)."""

    def gc(array, **kw):
        return lambda tmp: ["--input-root", str(gc_input(tmp / "input", array, **kw))]

    def gc_file(name: str, content: bytes):
        def build(tmp):
            folder = tmp / "input" / "images" / "abdominal-t1-mri"
            folder.mkdir(parents=True)
            (folder / name).write_bytes(content)
            return ["--input-root", str(tmp / "input")]
        return build

    def truncated(tmp):
        gc_input(tmp / "input", blob_volume((16, 48, 64)))
        path = next((tmp / "input" / "images" / "abdominal-t1-mri").iterdir())
        path.write_bytes(path.read_bytes()[:-2000])
        return ["--input-root", str(tmp / "input")]

    def image_of(make):
        def build(tmp):
            folder = tmp / "input" / "images" / "abdominal-t1-mri"
            folder.mkdir(parents=True)
            sitk.WriteImage(make(), str(folder / "x.mha"))
            return ["--input-root", str(tmp / "input")]
        return build

    def spacing(value):
        def build(tmp):
            write_mha_with_spacing(tmp / "input" / "images" / "abdominal-t1-mri" / "x.mha", value)
            return ["--input-root", str(tmp / "input")]
        return build

    def folders(*names, files=1):
        def build(tmp):
            for name in names:
                for i in range(files):
                    write_image(tmp / "input" / "images" / name / f"{i}.mha", blob_volume((8, 16, 16)))
            return ["--input-root", str(tmp / "input")]
        return build

    def empty_folder(tmp):
        (tmp / "input" / "images" / "abdominal-t1-mri").mkdir(parents=True)
        (tmp / "input" / "images" / "abdominal-t1-mri" / "notes.txt").write_text("not an image")
        return ["--input-root", str(tmp / "input")]

    nan = blob_volume((8, 16, 16)).astype(np.float32)
    nan[2, 3, 4] = np.nan
    inf = blob_volume((8, 16, 16)).astype(np.float32)
    inf[1, 1, 1] = np.inf
    return {
        "no input folder": (lambda tmp: ["--input-root", str(tmp / "missing")], "input folder does not exist"),
        "no image": (empty_folder, "no image file"),
        "several mri folders": (folders("t1-mri", "t2-mri"), "several MRI folders"),
        "two images": (folders("abdominal-t1-mri", files=2), "2 image files"),
        "unreadable file": (gc_file("x.mha", b"garbage that is not an image"), "cannot read image"),
        "truncated file": (truncated, "truncated"),
        "2D image": (image_of(lambda: sitk.GetImageFromArray(np.arange(100, dtype=np.int16).reshape(10, 10))), "2D image"),
        "4D image": (image_of(lambda: sitk.JoinSeries([sitk.GetImageFromArray(blob_volume((4, 8, 8), i)) for i in range(2)])), "4D image"),
        "multi-component": (image_of(lambda: sitk.GetImageFromArray(np.arange(4 * 5 * 6 * 3, dtype=np.int16).reshape(4, 5, 6, 3), isVector=True)), "multi-component"),
        "constant image": (gc(np.full((8, 16, 16), 7, np.int16)), "image is constant"),
        "all-zero image": (gc(np.zeros((8, 16, 16), np.float32)), "image is constant"),
        "NaN voxels": (gc(nan), "NaN or infinite"),
        "Inf voxels": (gc(inf), "NaN or infinite"),
        "zero spacing": (spacing("1 0 3"), "invalid voxel spacing"),
    }


@pytest.mark.parametrize("name", list(bad_inputs()))
def test_bad_input_fails_with_one_line_naming_the_problem_and_writes_nothing(name, tmp_path, small_checkpoint, capsys):
    build, fragment = bad_inputs()[name]
    argv = build(tmp_path) + ["--output-root", str(tmp_path / "output"), "--checkpoint", str(small_checkpoint), "--fast"]
    code, _, err = run(argv, capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert files_under(tmp_path / "output") == []


def test_negative_spacing_in_a_header_is_read_as_a_flipped_axis_and_segmented_on_that_grid(tmp_path, small_checkpoint, capsys):
    path = tmp_path / "input" / "images" / "abdominal-t1-mri" / "x.mha"
    write_mha_with_spacing(path, "1 -1.2 3")
    code, _, err = run(["--input-root", str(tmp_path / "input"), "--output-root", str(tmp_path / "o"),
                        "--checkpoint", str(small_checkpoint), "--fast"], capsys)
    assert code == 0, err
    image, mask = sitk.ReadImage(str(path)), sitk.ReadImage(str(tmp_path / "o" / GC_OUT))
    assert image.GetSpacing() == (1.0, 1.2, 3.0) and image.GetDirection()[4] == -1.0  # ITK's reading
    assert mask.GetSpacing() == image.GetSpacing() and mask.GetDirection() == image.GetDirection()


def resource_problems() -> dict[str, tuple]:
    def other_network(tmp):
        torch.save(SegFormer3D(embed_dims=(16, 32, 64, 128)).state_dict(), tmp / "other.pt")
        return ["--checkpoint", str(tmp / "other.pt"), "--stats", str(stats_file(tmp))]

    def stats_file(tmp, text=None):
        path = tmp / "mri_statistics.csv"
        write_stats_csv(PANTHER_STATS, path) if text is None else path.write_text(text)
        return path

    def corrupt_checkpoint(tmp, ck):
        (tmp / "bad.ckpt").write_bytes(ck.read_bytes()[: 4096])
        return ["--checkpoint", str(tmp / "bad.ckpt")]

    return {
        "checkpoint missing": (lambda tmp, ck: ["--checkpoint", str(tmp / "nope.ckpt")], "nope.ckpt: checkpoint file not found"),
        "checkpoint corrupt": (corrupt_checkpoint, "bad.ckpt: cannot load checkpoint"),
        "another network": (lambda tmp, ck: other_network(tmp), "does not match the SegFormer3D network"),
        "stats missing": (lambda tmp, ck: ["--checkpoint", str(ck), "--stats", str(tmp / "none.csv")], "none.csv: statistics file not found"),
        "stats malformed": (lambda tmp, ck: ["--checkpoint", str(ck), "--stats", str(stats_file(tmp, "median_spacing,10th_percentile_spacing,median_size\n[1 2],[3],[x]\n"))], "statistics file malformed"),
        "stats header": (lambda tmp, ck: ["--checkpoint", str(ck), "--stats", str(stats_file(tmp, "a,b\n1,2\n"))], "statistics file malformed"),
    }


@pytest.mark.parametrize("name", list(resource_problems()))
def test_bad_checkpoint_or_statistics_fail_clearly_and_write_nothing(name, tmp_path, small_checkpoint, capsys):
    build, fragment = resource_problems()[name]
    inp = gc_input(tmp_path / "input", blob_volume((8, 16, 16)))
    argv = build(tmp_path, small_checkpoint) + ["--input-root", str(inp), "--output-root", str(tmp_path / "output")]
    code, _, err = run(argv, capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert files_under(tmp_path / "output") == []


def test_process_py_runs_as_a_program_and_exits_non_zero_on_error(tmp_path, small_checkpoint):
    ok = subprocess.run([sys.executable, "process.py", "--input-root", str(gc_input(tmp_path / "in", blob_volume((16, 48, 64)))),
                         "--output-root", str(tmp_path / "out"), "--checkpoint", str(small_checkpoint), "--fast", "--device", "cpu"],
                        cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / GC_OUT).is_file()
    bad = subprocess.run([sys.executable, "process.py", "--input-root", str(tmp_path / "missing"), "--output-root", str(tmp_path / "o2"),
                          "--checkpoint", str(small_checkpoint)], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and not (tmp_path / "o2").exists()


def test_help_lists_the_documented_options():
    out = subprocess.run([sys.executable, "process.py", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    for option in ("--input-root", "--output-root", "--device", "--fast", "--checkpoint", "--stats", "--batch", "--output-dir"):
        assert option in out


def test_the_mask_is_readable_by_others_like_any_output_file(tmp_path, small_checkpoint, capsys):
    inp = gc_input(tmp_path / "input", blob_volume((16, 48, 64)))
    assert run(["--input-root", str(inp), "--output-root", str(tmp_path / "o"), "--checkpoint", str(small_checkpoint), "--fast"], capsys)[0] == 0
    assert (tmp_path / "o" / GC_OUT).stat().st_mode & 0o044 == 0o044
