"""The command line as users and grand-challenge run it: outputs, batch mode, and every bad
input ending in one clear line, a non-zero exit and no output file."""
from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import PANTHER_STATS, ROOT, blob_volume, gc_input, write_image
from panther_seg.network import SegFormer3D
from panther_seg.cli import main
from panther_seg.contract.stats import write_stats_csv

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
    code, out, err = run(["--input-root", str(tmp_path / "in"), "--output-root", str(tmp_path / "o"),
                          "--checkpoint", str(small_checkpoint), "--fast"], capsys)
    assert code == 0, err
    assert (tmp_path / "o" / GC_OUT).is_file()
    assert "input x.mha" in out


def test_batch_mode_writes_one_mask_per_input_in_its_format(tmp_path, small_checkpoint, capsys):
    write_image(tmp_path / "cases" / "a_0000.nii.gz", blob_volume((16, 48, 64), 1))
    write_image(tmp_path / "cases" / "b.nrrd", blob_volume((16, 48, 64), 2))
    write_image(tmp_path / "single" / "c.nii", blob_volume((16, 48, 64), 3).astype(np.float32))
    code, out, err = run(["--batch", str(tmp_path / "cases"), str(tmp_path / "single" / "c.nii"),
                          "--output-dir", str(tmp_path / "masks"), "--checkpoint", str(small_checkpoint), "--fast"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["a_0000.nii.gz", "b.nrrd", "c.nii"]
    assert "3 of 3 cases written" in out


def test_batch_mode_exits_non_zero_when_one_case_fails_but_writes_the_others(tmp_path, small_checkpoint, capsys):
    write_image(tmp_path / "cases" / "good.mha", blob_volume((16, 48, 64)))
    write_image(tmp_path / "cases" / "flat.mha", np.zeros((16, 48, 64), np.int16))
    code, out, err = run(["--batch", str(tmp_path / "cases"), "--output-dir", str(tmp_path / "masks"),
                          "--checkpoint", str(small_checkpoint), "--fast"], capsys)
    assert code == 1
    assert [p.name for p in (tmp_path / "masks").iterdir()] == ["good.mha"]
    assert "flat.mha: image is constant" in err and "1 of 2 cases written" in out


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


# --- one error format for what the operating system refuses ---------------------------------------


@pytest.fixture(scope="module")
def unprivileged(small_checkpoint):
    """A world-traversable folder, a copy of the checkpoint in it, and a context in which file
    permissions apply: as root, the effective user becomes 'nobody' (reversibly). 'nobody' may
    not be able to read the Python installation, so one full run first imports every module."""
    # not under pytest's own temporary root: pytest keeps that 0700 (and resets it, in any session)
    folder = Path(tempfile.mkdtemp(prefix="panther-perm-"))
    os.chmod(folder, 0o755)
    shutil.copy(small_checkpoint, folder / "small.pt")
    os.chmod(folder / "small.pt", 0o644)
    write_image(folder / "warm" / "w.mha", blob_volume((8, 16, 16)))
    assert main(["--batch", str(folder / "warm"), "--output-dir", str(folder / "warm-out"), "--checkpoint", str(folder / "small.pt"), "--fast"]) == 0

    @contextlib.contextmanager
    def as_user():
        if os.geteuid() != 0:
            yield
            return
        os.seteuid(65534)
        try:
            yield
        finally:
            os.seteuid(0)

    yield folder, folder / "small.pt", as_user
    shutil.rmtree(folder, ignore_errors=True)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def permission_cases(folder: Path, checkpoint: Path) -> dict[str, tuple]:
    """name -> (what to make unreadable or unwritable, argv, expected line)."""
    image = folder / "in" / "x.mha"
    mhd = folder / "mhd" / "y.mhd"
    stats, config = folder / "mri_statistics.csv", folder / "config.json"
    masks = folder / "masks"
    batch = ["--batch", str(image), "--output-dir", str(masks), "--checkpoint", str(checkpoint), "--fast"]
    return {
        "unreadable image": (image, batch, f"error: {image}: cannot read: Permission denied"),
        "unreadable raw data": (mhd.with_suffix(".raw"), ["--batch", str(mhd), "--output-dir", str(masks), "--checkpoint", str(checkpoint)],
                                f"error: {mhd}: cannot read {mhd.with_suffix('.raw')}: Permission denied"),
        "unlistable input folder": (folder / "gc" / "images" / "abdominal-t1-mri", ["--input-root", str(folder / "gc"), "--output-root", str(masks), "--checkpoint", str(checkpoint)],
                                    f"error: {folder / 'gc' / 'images' / 'abdominal-t1-mri'}: cannot list the folder: Permission denied"),
        "unwritable output folder": (masks, batch, f"error: {masks}: output location is not writable (permission denied)"),
        "unreadable checkpoint": (checkpoint, batch, f"error: {checkpoint}: cannot read checkpoint: Permission denied"),
        "unreadable statistics": (stats, batch + ["--stats", str(stats)], f"error: {stats}: statistics file unreadable: Permission denied"),
        "unreadable model config": (config, batch + ["--model-config", str(config)], f"error: {config}: cannot read: Permission denied"),
    }


@pytest.mark.parametrize("name", list(permission_cases(Path("/f"), Path("/c"))))
def test_permission_problems_are_one_line_naming_the_file(name, unprivileged, capsys):
    folder, checkpoint, as_user = unprivileged
    for sub in ("in", "mhd", "gc", "masks"):
        shutil.rmtree(folder / sub, ignore_errors=True)
    write_image(folder / "in" / "x.mha", blob_volume((8, 16, 16)))
    (folder / "mhd").mkdir()
    sitk.WriteImage(sitk.ReadImage(str(folder / "in" / "x.mha")), str(folder / "mhd" / "y.mhd"))
    write_image(folder / "gc" / "images" / "abdominal-t1-mri" / "z.mha", blob_volume((8, 16, 16)))
    write_stats_csv(PANTHER_STATS, folder / "mri_statistics.csv")
    (folder / "config.json").write_text("{}")
    (folder / "masks").mkdir()
    os.chmod(folder / "masks", 0o777)
    target, argv, expected = permission_cases(folder, checkpoint)[name]
    os.chmod(target, 0o555 if target.is_dir() and name == "unwritable output folder" else 0)
    try:
        with as_user():
            code = main(argv)
    finally:
        os.chmod(target, 0o755 if target.is_dir() else 0o644)
    assert code == 1
    assert one_error_line(capsys.readouterr().err) == expected
    assert files_under(folder / "masks") == []


def test_output_under_a_file_or_onto_a_folder_is_refused_before_the_work(tmp_path, small_checkpoint, capsys):
    inp = gc_input(tmp_path / "input", blob_volume((8, 16, 16)))
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    code = main(["--input-root", str(inp), "--output-root", str(tmp_path / "plain.txt" / "out"), "--checkpoint", str(small_checkpoint)])
    assert code == 1 and one_error_line(capsys.readouterr().err) == f"error: {tmp_path / 'plain.txt'}: is not a folder: the output cannot be written under it"
    (tmp_path / "o" / GC_OUT).mkdir(parents=True)
    code = main(["--input-root", str(inp), "--output-root", str(tmp_path / "o"), "--checkpoint", str(small_checkpoint)])
    assert code == 1 and one_error_line(capsys.readouterr().err) == f"error: {tmp_path / 'o' / GC_OUT}: output path is a folder"


@pytest.mark.parametrize("content,problem", [
    ('{"embed_dims": [8, 16, 32, 64],', "not valid JSON: Expecting"),
    ("[8, 16, 32, 64]", "expected a dict of constructor arguments, got a list"),
    ('{"embed_dim": 8}', "unknown constructor argument 'embed_dim'"),
    ('{"num_heads": [3, 3, 3, 3]}', "the network it builds cannot run (RuntimeError"),
    ("\udcff", "not valid JSON"),
])
def test_a_bad_model_config_names_its_file(content, problem, tmp_path, small_checkpoint, capsys):
    config = tmp_path / "config.json"
    config.write_bytes(content.encode("utf-8", "surrogateescape"))
    inp = gc_input(tmp_path / "input", blob_volume((8, 16, 16)))
    code = main(["--input-root", str(inp), "--output-root", str(tmp_path / "o"), "--checkpoint", str(small_checkpoint), "--model-config", str(config)])
    assert code == 1
    assert one_error_line(capsys.readouterr().err).startswith(f"error: {config}: {problem}")


def run_process(args: list[str], preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "process.py", *args], cwd=ROOT, capture_output=True, text=True, preexec_fn=preexec)


def test_a_write_error_leaves_no_file_and_one_line(tmp_path, small_checkpoint):
    """The operating system refuses the write itself (a file-size limit of 100 bytes: EFBIG, as
    a full disk's ENOSPC): the temporary file is removed and nothing is renamed into place."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write() instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    inp = gc_input(tmp_path / "input", blob_volume((16, 48, 64)))
    out = tmp_path / "out"
    done = run_process(["--input-root", str(inp), "--output-root", str(out), "--checkpoint", str(small_checkpoint), "--fast",
                        "--device", "cpu"], preexec=limit_file_size)
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert line.startswith(f"error: {out / GC_OUT}: cannot write the mask: "), line
    assert files_under(out) == []


def test_a_full_disk_and_a_read_only_file_system_are_one_line_each(tmp_path, small_checkpoint):
    """Real file systems: a read-only tmpfs, and a tmpfs filled up (a private mount namespace;
    skipped where unprivileged user namespaces are not allowed)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -rm (a private mount namespace) to mount a tiny tmpfs")
    read_only, full = tmp_path / "ro", tmp_path / "full"
    read_only.mkdir(), full.mkdir()
    image = tmp_path / "x.mha"
    write_image(image, blob_volume((16, 48, 64)))
    common = ["--checkpoint", str(small_checkpoint), "--fast", "--device", "cpu"]
    driver = (f"import sys; from panther_seg.cli import main; "
              f"print(main(['--batch', {str(image)!r}, '--output-dir', {str(read_only / 'masks')!r}, *{common!r}]), "
              f"main(['--batch', {str(image)!r}, '--output-dir', {str(full)!r}, *{common!r}]), 'left:', sorted(__import__('os').listdir({str(full)!r})))")
    shell = ('mount -t tmpfs -o ro,size=1m tmpfs "$1" && mount -t tmpfs -o size=64k tmpfs "$2" && '
             '{ dd if=/dev/zero of="$2/filler" bs=4k 2>/dev/null; true; } && exec "$3" -c "$4"')
    done = subprocess.run(["unshare", "-rm", "sh", "-c", shell, "sh", str(read_only), str(full), sys.executable, driver],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "1 1 left: ['filler']", done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"error: {read_only}: output location is not writable (read-only file system)",
        f"error: {full / 'x.mha'}: cannot write the mask: No space left on device",
    ], done.stderr
