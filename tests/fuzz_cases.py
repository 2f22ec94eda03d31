"""Odd and bad inputs made from a real MRI (../shared/data/real-mri, else the smoke case), each
with the outcome it must have: the same mask as the plain copy, a mask on its own grid, or a
refusal whose message holds a given fragment. Used by test_fuzz.py and the focused tests."""
from __future__ import annotations

import gzip
import math
import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from conftest import ROOT, SHARED

REAL_MRI = SHARED / "data" / "real-mri" / "example_mr_sm.nii.gz"
SMOKE_CASE = ROOT / "test" / "input" / "images" / "abdominal-t1-mri" / "7c3e8a52-1f4b-4d2e-9a61-0b5d3c2e9f10.mha"
CROP_XYZ = (60, 60, 16)  # small enough for one network window at the target spacing: fast


def source_path() -> Path:
    return REAL_MRI if REAL_MRI.is_file() else SMOKE_CASE


def source_image() -> sitk.Image:
    """A centred crop of the real MRI (or of the smoke case when ../shared is absent)."""
    image = sitk.ReadImage(str(source_path()))
    size = image.GetSize()
    start = [(s - min(c, s)) // 2 for s, c in zip(size, CROP_XYZ)]
    return sitk.RegionOfInterest(image, [min(c, s) for s, c in zip(size, CROP_XYZ)], start)


@dataclass(frozen=True)
class Case:
    """``outcome``: 'same' (the plain copy's mask, voxel for voxel), 'grid' (a binary mask on
    the file's own grid) or 'refused' (one line holding ``fragment``)."""

    name: str
    outcome: str
    fragment: str = ""


# --- writers and byte-level damage --------------------------------------------------------------


def write(image: sitk.Image, path: Path, compress: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def with_geometry(image: sitk.Image, spacing=None, origin=None, direction=None) -> sitk.Image:
    out = sitk.Image(image)
    if spacing is not None:
        out.SetSpacing(spacing)
    if origin is not None:
        out.SetOrigin(origin)
    if direction is not None:
        out.SetDirection(tuple(float(d) for d in np.asarray(direction, dtype=float).ravel()))
    return out


def from_array(array: np.ndarray, like: sitk.Image, vector: bool = False) -> sitk.Image:
    out = sitk.GetImageFromArray(array, isVector=vector)
    if out.GetDimension() == 3:
        out.CopyInformation(like)
    return out


def patch(path: Path, old: bytes, new: bytes) -> Path:
    data = path.read_bytes()
    assert old in data, (path, old)
    path.write_bytes(data.replace(old, new, 1))
    return path


def meta_field(path: Path, key: str, value: str) -> Path:
    """Replace one MetaImage header field's value."""
    data = path.read_bytes()
    start = data.index(key.encode() + b" = ")
    end = data.index(b"\n", start)
    path.write_bytes(data[:start] + f"{key} = {value}".encode() + data[end:])
    return path


def cut(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def scramble_middle(path: Path, length: int = 5000) -> Path:
    """Overwrite bytes in the middle with noise (ITK decompresses this with only a warning)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + length] = np.random.default_rng(0).bytes(min(length, len(data) - mid))
    path.write_bytes(bytes(data))
    return path


def nifti_dims(path: Path, dims: tuple[int, ...]) -> Path:
    """Rewrite a NIfTI-1 header's dim[] (uncompressed file)."""
    data = bytearray(path.read_bytes())
    data[40:56] = struct.pack("<8h", len(dims), *dims, *([1] * (7 - len(dims))))
    path.write_bytes(bytes(data))
    return path


def gzip_file(src: Path, dst: Path) -> Path:
    dst.write_bytes(gzip.compress(src.read_bytes()))
    src.unlink()
    return dst


def rotation_z(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


# --- the cases ------------------------------------------------------------------------------------


def build_cases(accepted: Path, refused: Path) -> list[Case]:
    """Write every case (one file each, plus the data files of .mhd headers) into ``accepted``
    or ``refused`` by its expected outcome."""
    accepted.mkdir(parents=True, exist_ok=True)
    refused.mkdir(parents=True, exist_ok=True)
    src = source_image()
    arr = sitk.GetArrayFromImage(src)
    cases: list[Case] = []

    def add(name: str, outcome: str, make: Callable[[Path], object], fragment: str = "") -> None:
        make((refused if outcome == "refused" else accepted) / name)
        cases.append(Case(name, outcome, fragment))

    # same voxels, other formats and types: the very same mask
    add("ref.mha", "same", lambda p: write(src, p))
    add("raw.mha", "same", lambda p: write(src, p, compress=False))
    add("ext.mhd", "same", lambda p: write(src, p, compress=False))
    add("extz.mhd", "same", lambda p: write(src, p))
    add("plain.nii", "same", lambda p: write(src, p))
    add("gz.nii.gz", "same", lambda p: write(src, p))
    add("gz.nrrd", "same", lambda p: write(src, p))
    add("raw.nrrd", "same", lambda p: write(src, p, compress=False))
    add("i32.nii.gz", "same", lambda p: write(sitk.Cast(src, sitk.sitkInt32), p))
    # float voxels: the protocol resamples in the input's pixel type, so an int16 scan and its
    # float64 copy differ by ITK's integer truncation: a mask on its own grid
    add("f64.nii.gz", "grid", lambda p: write(sitk.Cast(src, sitk.sitkFloat64), p))
    add("trailing.mha", "same", lambda p: p.write_bytes(write(src, p).read_bytes() + b"trailing bytes"))
    add("bigendian.mha", "same", lambda p: big_endian(src, p))
    add("extrafield.mha", "same", lambda p: patch(write(src, p), b"ObjectType = Image", b"ObjectType = Image\nComment = odd but harmless"))

    # odd but valid: a binary mask on the file's own grid
    add("flipx.mha", "grid", lambda p: write(with_geometry(src, direction=np.diag([-1.0, 1, 1])), p))
    add("permuted.nii.gz", "grid", lambda p: write(with_geometry(src, direction=[[0, 1, 0], [1, 0, 0], [0, 0, -1]]), p))
    add("oblique.mha", "grid", lambda p: write(with_geometry(src, direction=rotation_z(30)), p))
    add("noisydir.mha", "grid", lambda p: write(with_geometry(src, direction=rotation_z(1e-5)), p))
    add("aniso.nrrd", "grid", lambda p: write(with_geometry(src, spacing=(0.7, 0.7, 6.0)), p))
    add("finespacing.mha", "grid", lambda p: write(with_geometry(src, spacing=(0.05, 0.05, 0.05)), p))
    add("farorigin.mha", "grid", lambda p: write(with_geometry(src, origin=(1e5, -1e5, 3e4)), p))
    add("negspacing.mha", "grid", lambda p: meta_field(write(src, p, compress=False), "ElementSpacing", "3 -3 3"))
    add("uint8.mha", "grid", lambda p: write(from_array(rescaled(arr, 255).astype(np.uint8), src), p))
    add("sparse.nii.gz", "grid", lambda p: write(from_array(np.where(np.arange(arr.size).reshape(arr.shape) % 97 == 0, arr, 0).astype(np.int16), src), p))
    add("tiny.mha", "grid", lambda p: write(sitk.RegionOfInterest(src, [6, 5, 2], [20, 20, 5]), p))
    add("onecolumn.mha", "grid", lambda p: write(sitk.RegionOfInterest(src, [1, 40, 10], [30, 10, 3]), p))
    add("offset64.nii.gz", "grid", lambda p: write(from_array(arr.astype(np.float64) + 1e6, src), p))

    # damaged data in every format
    add("corrupt.mha", "refused", lambda p: scramble_middle(write(src, p)), "corrupt")
    add("cut.mha", "refused", lambda p: cut(write(src, p)), "truncated")
    add("cutraw.mha", "refused", lambda p: cut(write(src, p, compress=False)), "truncated")
    add("cutext.mhd", "refused", lambda p: cut(write(src, p, compress=False).with_suffix(".raw")), "truncated")
    add("corruptext.mhd", "refused", lambda p: scramble_middle(write(src, p).with_suffix(".zraw")), "corrupt")
    add("missingext.mhd", "refused", lambda p: write(src, p, compress=False).with_suffix(".raw").unlink(), "missing")
    add("understated.mha", "refused", lambda p: meta_field(write(src, p), "CompressedDataSize", str(compressed_size(p) - 500)), "truncated")
    add("overstated.mha", "refused", lambda p: meta_field(write(src, p), "CompressedDataSize", str(compressed_size(p) + 500)), "truncated")
    add("cut.nii.gz", "refused", lambda p: cut(write(src, p)), "truncated")
    add("corrupt.nii.gz", "refused", lambda p: scramble_middle(write(src, p)), "corrupt")
    add("cut.nii", "refused", lambda p: cut(write(src, p)), "truncated")
    add("shortdata.nii.gz", "refused", lambda p: gzip_file(cut(write(src, p.with_name("shortdata.nii"))), p), "truncated")
    add("corrupt.nrrd", "refused", lambda p: scramble_middle(write(src, p)), "corrupt")
    add("cutraw.nrrd", "refused", lambda p: cut(write(src, p, compress=False)), "truncated")
    add("empty.mha", "refused", lambda p: p.write_bytes(b""), "file is empty")
    add("garbage.nii.gz", "refused", lambda p: p.write_bytes(np.random.default_rng(1).bytes(4000)), "")
    add("garbage.nrrd", "refused", lambda p: p.write_bytes(b"NRRD0004\n" + np.random.default_rng(2).bytes(4000)), "")
    add("headeronly.mha", "refused", lambda p: p.write_bytes(write(src, p).read_bytes()[:120]), "")
    add("list.mhd", "refused", lambda p: meta_field(write(src, p, compress=False), "ElementDataFile", "LIST"), "not supported")

    # headers that declare more than memory allows (over a few hundred bytes of data)
    add("huge.mha", "refused", lambda p: meta_field(write(src, p), "DimSize", "2000 2000 1000"), "over the limit")
    add("huge.nii.gz", "refused", lambda p: gzip_file(nifti_dims(write(src, p.with_name("huge.nii")), (2000, 2000, 1000)), p), "over the limit")
    add("huge.nrrd", "refused", lambda p: patch(write(src, p), f"sizes: {' '.join(map(str, src.GetSize()))}".encode(), b"sizes: 2000 2000 1000"), "over the limit")
    add("coarse.mha", "refused", lambda p: write(with_geometry(src, spacing=(50.0, 50.0, 50.0)), p), "network grid")

    # geometry
    add("spacing1e6.mha", "refused", lambda p: meta_field(write(src, p), "ElementSpacing", "1e6 1e6 1e6"), "implausible voxel spacing")
    add("spacing1e-6.mha", "refused", lambda p: meta_field(write(src, p), "ElementSpacing", "1e-6 1e-6 3"), "implausible voxel spacing")
    add("spacingnan.mha", "refused", lambda p: meta_field(write(src, p), "ElementSpacing", "nan 3 3"), "spacing")
    add("spacingzero.mha", "refused", lambda p: meta_field(write(src, p), "ElementSpacing", "3 0 3"), "spacing")
    add("sheared.mha", "refused", lambda p: meta_field(write(src, p), "TransformMatrix", "1 0 0 0.5 1 0 0 0 1"), "not orthonormal")
    add("scaled.mha", "refused", lambda p: meta_field(write(src, p), "TransformMatrix", "2 0 0 0 1 0 0 0 0.5"), "not orthonormal")
    add("singular.mha", "refused", lambda p: meta_field(write(src, p), "TransformMatrix", "1 0 0 1 0 0 0 0 1"), "")

    # voxels and shapes
    add("nan.mha", "refused", lambda p: write(from_array(with_value(arr.astype(np.float32), np.nan), src), p), "NaN or infinite")
    add("inf.nii.gz", "refused", lambda p: write(from_array(with_value(arr.astype(np.float64), -np.inf), src), p), "NaN or infinite")
    add("constant.mha", "refused", lambda p: write(from_array(np.full_like(arr, 7), src), p), "image is constant")
    add("slice.mha", "refused", lambda p: write(sitk.RegionOfInterest(src, [src.GetSize()[0], src.GetSize()[1], 1], [0, 0, 3]), p), "single slice")
    add("flat2d.mha", "refused", lambda p: write(sitk.GetImageFromArray(arr[0]), p), "2D image")
    add("series4d.mha", "refused", lambda p: write(sitk.JoinSeries([src, src]), p), "4D image")
    add("vector.nrrd", "refused", lambda p: write(from_array(np.stack([arr] * 3, axis=-1), src, vector=True), p), "multi-component")
    add("complex.mha", "refused", lambda p: write(from_array((arr + 1j * arr).astype(np.complex64), src), p), "multi-component")
    return cases


def rescaled(array: np.ndarray, top: float) -> np.ndarray:
    a = array.astype(np.float64)
    return np.round((a - a.min()) / (a.max() - a.min()) * top)


def with_value(array: np.ndarray, value: float) -> np.ndarray:
    array[array.shape[0] // 2, 3, 4] = value
    return array


def compressed_size(path: Path) -> int:
    return int(re.search(rb"CompressedDataSize = (\d+)", path.read_bytes()).group(1))


def big_endian(image: sitk.Image, path: Path) -> None:
    """An uncompressed MetaImage whose voxels are stored most significant byte first."""
    write(image, path, compress=False)
    data = path.read_bytes()
    start = data.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
    swapped = np.frombuffer(data[start:], dtype="<i2").astype(">i2").tobytes()
    path.write_bytes(data[:start] + swapped)
    patch(path, b"BinaryDataByteOrderMSB = False", b"BinaryDataByteOrderMSB = True")


# --- running the command line in a child, with its peak memory ----------------------------------


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int

    def error_lines(self) -> list[str]:
        """stderr's lines but batch mode's progress bar (whose carriage returns split lines too)."""
        text = re.sub(r"cases:\s+\d+%\|[^\]\r\n]*\]", "", self.stderr)
        return [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]


# Runs process.py as __main__ and, at exit, writes the process's own peak RSS (Linux's VmHWM). The
# kernel's ru_maxrss of a child is no use here: it keeps the RSS the child had before ``exec``, a
# copy of this pytest process, which is large after an in-process inference.
_MEASURED_PROCESS = """
import atexit, re, resource, runpy, sys
def _write_peak(path=sys.argv.pop(1)):
    try:
        with open('/proc/self/status') as f:
            peak = int(re.search(r'VmHWM:\\s*(\\d+) kB', f.read()).group(1)) * 1024
    except OSError:  # no /proc (macOS): ru_maxrss, in bytes there
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(path, 'w') as f:
        f.write(str(peak))
atexit.register(_write_peak)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """``process.py`` in a child process, with the peak resident memory it reached itself."""
    out, err, peak = cwd / "stdout.txt", cwd / "stderr.txt", cwd / "peak_rss.txt"
    peak.unlink(missing_ok=True)
    with open(out, "wb") as fo, open(err, "wb") as fe:
        returncode = subprocess.run([sys.executable, "-c", _MEASURED_PROCESS, str(peak), str(ROOT / "process.py"), *args],
                                    cwd=ROOT, stdout=fo, stderr=fe, env={**os.environ, **(env or {})}).returncode
    assert peak.is_file(), f"process.py {' '.join(args)} ended without running its exit handlers (exit {returncode})"
    return Run(returncode, out.read_text(), err.read_text(), int(peak.read_text()))
