"""Reading is verified: every accepted format reads back voxel for voxel; damaged data in every
format is refused with a reason (never read with wrong voxels); ITK's own warnings are failures;
geometry is checked on the header before any voxel is read."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fuzz_cases import cut, meta_field, rotation_z, scramble_middle, source_image, write
from panther_seg.io import images as image_io
from panther_seg.config import DIRECTION_TOLERANCE, SPACING_RANGE_MM
from panther_seg.errors import InputError
from panther_seg.io.images import Header, read_image, validate_header
from panther_seg.io.integrity import native_stderr

FORMATS = [  # (file name, compressed)
    ("c.mha", True), ("u.mha", False), ("u.mhd", False), ("c.mhd", True),
    ("u.nii", False), ("c.nii.gz", True), ("c.nrrd", True), ("u.nrrd", False),
]


@pytest.fixture(scope="module")
def src() -> sitk.Image:
    return source_image()


@pytest.mark.parametrize("name,compressed", FORMATS)
def test_every_format_reads_back_voxel_for_voxel(name, compressed, src, tmp_path):
    image = read_image(write(src, tmp_path / name, compressed))
    assert image.GetSize() == src.GetSize()
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(src))


def data_file(path: Path) -> Path:
    """The file that holds the voxels (an .mhd's .raw or .zraw)."""
    if path.suffix == ".mhd":
        return next(p for p in path.parent.iterdir() if p.stem == path.stem and p.suffix in (".raw", ".zraw"))
    return path


@pytest.mark.parametrize("name,compressed", FORMATS)
def test_a_file_cut_in_half_is_refused_in_every_format(name, compressed, src, tmp_path):
    path = write(src, tmp_path / name, compressed)
    cut(data_file(path))
    with pytest.raises(InputError, match="is truncated") as e:
        read_image(path)
    assert str(e.value).startswith(f"{path}: ")


@pytest.mark.parametrize("name", [n for n, compressed in FORMATS if compressed])
def test_compressed_data_damaged_in_the_middle_is_refused_in_every_format(name, src, tmp_path):
    path = write(src, tmp_path / name)
    scramble_middle(data_file(path))
    with pytest.raises(InputError, match="corrupt"):
        read_image(path)


def test_itk_alone_reads_that_damage_without_an_error(src, tmp_path):
    """Why the stream check exists: ITK returns wrong voxels for these with no exception."""
    mha = scramble_middle(write(src, tmp_path / "x.mha"))
    nii = cut(write(src, tmp_path / "x.nii.gz"))
    for path in (mha, nii):
        with native_stderr():
            wrong = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        assert not np.array_equal(wrong, sitk.GetArrayViewFromImage(src))


def test_a_reader_warning_is_a_failure_even_past_the_stream_check(src, tmp_path, monkeypatch):
    """With the stream check switched off, ITK's 'Uncompress failed' warning still refuses."""
    monkeypatch.setattr(image_io, "verify_voxel_data", lambda path, declared: None)
    path = scramble_middle(write(src, tmp_path / "x.mha"))
    with pytest.raises(InputError, match="the reader reported a problem while reading the voxels: Uncompress failed"):
        read_image(path)


def test_a_compressed_size_smaller_than_the_stream_is_refused(src, tmp_path):
    """ITK would decompress only the declared bytes and return the rest of the image wrong."""
    path = write(src, tmp_path / "x.mha")
    declared = int(path.read_bytes().split(b"CompressedDataSize = ")[1].split(b"\n")[0])
    meta_field(path, "CompressedDataSize", str(declared - 500))
    with pytest.raises(InputError, match="truncated .* within the .* bytes its header declares"):
        read_image(path)


@pytest.mark.parametrize("name", ["x.nii", "x.nii.gz"])
def test_nifti_nan_voxels_are_refused_though_itk_reads_them_as_zero(name, src, tmp_path):
    array = sitk.GetArrayFromImage(src).astype(np.float32)
    array[5, 6, 7] = np.nan
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(src)
    path = write(image, tmp_path / name)
    assert sitk.GetArrayViewFromImage(sitk.ReadImage(str(path)))[5, 6, 7] == 0  # ITK's silent substitution
    with pytest.raises(InputError, match="NaN or infinite"):
        read_image(path)


def test_missing_data_file_and_multi_file_data_are_refused(src, tmp_path):
    missing = write(src, tmp_path / "m.mhd", compress=False)
    data_file(missing).unlink()
    with pytest.raises(InputError, match="m.mhd: its voxel data file m.raw is missing"):
        read_image(missing)
    listed = meta_field(write(src, tmp_path / "l.mhd", compress=False), "ElementDataFile", "LIST")
    with pytest.raises(InputError, match="multi-file MetaImage data .* not supported"):
        read_image(listed)


def test_empty_file_is_refused(tmp_path):
    (tmp_path / "e.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="e.nii.gz: file is empty"):
        read_image(tmp_path / "e.nii.gz")


def test_native_stderr_captures_what_c_code_writes_and_restores_the_descriptor(capfd):
    with native_stderr() as captured:
        os.write(2, b"WARNING: In itkFoo.cxx, line 1\nUncompress failed\n")
    assert captured.first_line == "Uncompress failed"
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


# --- geometry, judged on the header --------------------------------------------------------------


def header(spacing=(1.0, 1.0, 3.0), direction=tuple(np.eye(3).ravel())) -> Header:
    return Header(3, (10, 10, 10), tuple(spacing), tuple(float(d) for d in np.ravel(direction)), 1, 2)


def shear(amount: float) -> np.ndarray:
    return np.array([[1.0, amount, 0], [0, 1, 0], [0, 0, 1]])


@pytest.mark.parametrize("direction,fragment", [
    (shear(0.5), "not orthonormal"),  # determinant 1, yet not a rotation
    (shear(2 * DIRECTION_TOLERANCE), "not orthonormal"),
    (np.diag([2.0, 1.0, 0.5]), "not orthonormal"),  # determinant 1 too
    (np.zeros((3, 3)), "not orthonormal"),
    (np.full((3, 3), np.nan), "not finite"),
])
def test_direction_that_is_not_a_rotation_is_refused(direction, fragment):
    assert abs(np.linalg.det(shear(0.5)) - 1) < 1e-12
    with pytest.raises(InputError, match=fragment):
        validate_header(header(direction=direction), "x.mha")


def test_direction_with_rounding_noise_or_a_flip_is_accepted():
    noisy = np.eye(3) + 1e-5 * np.arange(9).reshape(3, 3)
    for direction in (noisy, np.diag([-1.0, 1, 1]), [[0, 1, 0], [0, 0, 1], [1, 0, 0]]):
        validate_header(header(direction=direction), "x.mha")


@pytest.mark.parametrize("spacing", [(1e6, 1, 1), (1, 1e-6, 1), (0.001, 0.001, 0.003), (1, 1, 101)])
def test_implausible_spacing_is_refused(spacing):
    with pytest.raises(InputError, match=r"implausible voxel spacing .* accepted is 0.01 to 100.0 mm"):
        validate_header(header(spacing=spacing), "x.mha")


@pytest.mark.parametrize("spacing", [(np.nan, 1, 1), (1, np.inf, 1), (0, 1, 1)])
def test_non_finite_or_zero_spacing_is_refused(spacing):
    with pytest.raises(InputError, match="invalid voxel spacing"):
        validate_header(header(spacing=spacing), "x.mha")


def test_spacing_at_the_ends_of_the_range_is_accepted():
    low, high = SPACING_RANGE_MM
    validate_header(header(spacing=(low, high, 1.0)), "x.mha")


def test_geometry_is_refused_before_the_voxels_are_read(src, tmp_path):
    """A sheared header over data that is cut short: the header's problem is the one named."""
    path = meta_field(write(src, tmp_path / "x.mha", compress=False), "TransformMatrix", "1 0 0 0.5 1 0 0 0 1")
    cut(path, 0.9)
    with pytest.raises(InputError, match="not orthonormal"):
        read_image(path)


# --- writing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mha", ".nii.gz", ".nii", ".nrrd"])
def test_a_mask_on_an_oblique_far_off_grid_is_written_in_every_format(suffix, src, tmp_path):
    """The read-back check allows the format's own precision (NIfTI: float32 geometry)."""
    tilt = np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    mask = sitk.Cast(src > 100, sitk.sitkUInt8)
    mask.SetDirection(tuple((rotation_z(33.3) @ tilt).ravel()))
    mask.SetOrigin((-118.123456789, 93.987654321, 1e5 + 0.123456))
    mask.SetSpacing((0.7812345, 0.7812345, 3.3))
    path = tmp_path / f"mask{suffix}"
    image_io.write_image_atomic(mask, path)
    back = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(mask))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_file_that_reads_back_wrong_is_not_renamed_into_place(src, tmp_path, monkeypatch):
    """A writer that silently writes the wrong thing (here: a flipped copy) leaves no output."""
    real_write = sitk.WriteImage

    def flipped_write(image: sitk.Image, name: str, useCompression: bool) -> None:
        real_write(sitk.Flip(image, [True, False, False]), name, useCompression)

    monkeypatch.setattr(image_io.sitk, "WriteImage", flipped_write)
    mask = sitk.Cast(src > 100, sitk.sitkUInt8)
    with pytest.raises(InputError, match="mask.mha: cannot write the mask: the file read back differs from the mask"):
        image_io.write_image_atomic(mask, tmp_path / "mask.mha")
    assert list(tmp_path.iterdir()) == []
