"""Proof that an image file holds all the voxels its header declares, intact.

ITK's readers do not always say when they read less than the header declares: a compressed
MetaImage corrupted in the middle is decompressed with no error and half its voxels wrong, and a
``.nii.gz`` cut in half reads with nothing on stderr at all; other damage only prints a warning
(``Uncompress failed``, ``data not read completely``) and carries on; and the NIfTI reader turns
NaN and infinite voxels into 0. So before ITK reads the voxels, the data stream is checked here,
in bounded memory: uncompressed data must be at least as long as declared; compressed data (zlib
in MetaImage, gzip in NIfTI and NRRD) must decompress completely, with a valid checksum, to at
least the declared length; NIfTI float voxels must be finite. While ITK reads, anything it
prints on the process's stderr is captured and is a failure (``native_stderr``).
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import tempfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from ..errors import InputError

CHUNK = 1 << 20
HEADER_LIMIT = 1 << 20  # text headers longer than this are not headers
GZIP_MAGIC = b"\x1f\x8b"

# MetaIO's element types and their sizes in bytes (metaTypes.h)
META_TYPE_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_ASCII_CHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2,
    "MET_INT": 4, "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}


class DamagedData(InputError):
    """The voxel data is missing, unreadable, shorter than declared, or damaged where compressed
    (as opposed to a header this module does not understand, which is ITK's to judge)."""


class CapturedStderr:
    """What native code wrote to file descriptor 2 inside ``native_stderr``."""

    text: str = ""

    @property
    def first_line(self) -> str:
        lines = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        meaningful = [ln for ln in lines if not ln.startswith(("WARNING: In ", "ERROR: In "))]
        return (meaningful or lines or [""])[0][:200]


@contextmanager
def native_stderr() -> Iterator[CapturedStderr]:
    """Redirect file descriptor 2 (where ITK's C++ code prints) to a temporary file and keep
    what was written, so that a reader's warning becomes a failure instead of loose text."""
    captured = CapturedStderr()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read(64 * 1024).decode("utf-8", "replace")


def _starts_with_gzip(path: Path, offset: int = 0) -> bool:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(2) == GZIP_MAGIC


def _inflated_length(f: BinaryIO, path: Path, wbits: int, what: str = "compressed voxel data", limit: int | None = None) -> int:
    """Length of one complete zlib/gzip stream read from ``f``'s position, within ``limit``
    bytes when the header says how long the stream is (as ITK reads no further); damage is an
    error."""
    d = zlib.decompressobj(wbits)
    total = 0
    left = limit
    try:
        while not d.eof:
            chunk = f.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                within = "" if limit is None else f" within the {limit} bytes its header declares"
                raise DamagedData(path, f"{what} is truncated (the stream ends after {total} bytes of voxels{within})")
            if left is not None:
                left -= len(chunk)
            total += len(d.decompress(chunk, CHUNK * 64))
            while d.unconsumed_tail and not d.eof:
                total += len(d.decompress(d.unconsumed_tail, CHUNK * 64))
    except zlib.error as e:
        raise DamagedData(path, f"{what} is corrupt ({e})") from None
    return total


def _short(path: Path, have: int, need: int, what: str = "voxel data") -> DamagedData:
    return DamagedData(path, f"{what} is truncated: {have} bytes where the header declares {need}")


# --- MetaImage (.mha, .mhd + .raw/.zraw) -------------------------------------------------------


def _meta_header(path: Path) -> tuple[dict[str, str], int]:
    """Key = value fields up to ElementDataFile (always the last one) and the header's length."""
    with open(path, "rb") as f:
        head = f.read(HEADER_LIMIT)
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(head):
        end = head.find(b"\n", pos)
        if end < 0:
            raise InputError(path, "MetaImage header does not end with an ElementDataFile line")
        line = head[pos:end].decode("latin-1").strip()
        pos = end + 1
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":
                return fields, pos
    raise InputError(path, "MetaImage header has no ElementDataFile line")


def _verify_meta(path: Path) -> None:
    fields, header_end = _meta_header(path)
    try:
        ndims = int(fields.get("NDims", "0")) or None  # ITK reads the first NDims values
        dims = [int(v) for v in fields["DimSize"].split()][:ndims]
        element = META_TYPE_BYTES[fields["ElementType"]]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except KeyError as e:
        raise InputError(path, f"MetaImage header lacks or misstates {e.args[0]}") from None
    except ValueError:
        raise InputError(path, "MetaImage header has a malformed NDims, DimSize or ElementNumberOfChannels") from None
    need = math.prod(dims) * element * channels
    compressed = fields.get("CompressedData", "False").lower() == "true"
    data_file = fields["ElementDataFile"]
    if data_file == "LOCAL":
        source, offset = path, header_end
    else:
        if data_file.split()[0] == "LIST" or len(data_file.split()) > 1 or "%" in data_file:
            raise InputError(path, f"multi-file MetaImage data (ElementDataFile = {data_file}) is not supported: "
                                   "convert it to one .mha")
        source = path.parent / data_file
        if not source.is_file():
            raise DamagedData(path, f"its voxel data file {data_file} is missing")
        try:
            offset = int(fields.get("HeaderSize", "0"))
        except ValueError:
            raise InputError(path, "MetaImage header has a malformed HeaderSize") from None
    what = "compressed voxel data" if source == path else f"compressed voxel data file {data_file}"
    size = source.stat().st_size
    with open(source, "rb"):  # readable at all (ITK says 'No such file' when it is not)
        pass
    if compressed:
        try:
            stream = int(fields["CompressedDataSize"]) if "CompressedDataSize" in fields else None
        except ValueError:
            raise InputError(path, "MetaImage header has a malformed CompressedDataSize") from None
        if offset < 0:
            raise InputError(path, "MetaImage header has HeaderSize = -1 (data at the end) for compressed data")
        if stream is not None and (stream <= 0 or stream > size - max(offset, 0)):
            raise DamagedData(path, f"{what} is truncated: {size - max(offset, 0)} bytes where CompressedDataSize "
                                    f"declares {stream}")
        with open(source, "rb") as f:
            f.seek(offset)
            have = _inflated_length(f, path, zlib.MAX_WBITS, what, stream)
    else:
        have = size if offset < 0 else size - offset
    if have < need:
        raise _short(path, have, need, "voxel data" if source == path else f"voxel data file {data_file}")


# --- NIfTI (.nii, .nii.gz) --------------------------------------------------------------------


# NIfTI datatypes whose voxels are IEEE floats (complex ones are pairs): ITK's NIfTI reader
# turns their NaN and infinite voxels into 0 without a word, so they are looked for here.
NIFTI_FLOAT_TYPES = {16: "f4", 32: "f4", 64: "f8", 1792: "f8"}


@dataclass(frozen=True)
class NiftiLayout:
    offset: int  # vox_offset: where the voxels start
    need: int  # bytes of voxel data the header declares
    floats: np.dtype | None  # on-disk float type, None for integers


def nifti_layout(path: Path, header: bytes) -> NiftiLayout:
    """Where the voxels are and how many bytes, from a NIfTI-1 or NIfTI-2 header."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dim = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = struct.unpack(endian + "f", header[108:112])[0]
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            dim = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        raise InputError(path, "not a NIfTI file (the header size field is neither 348 nor 540)")
    ndim = dim[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dim[1 : ndim + 1]) or bitpix <= 0 or bitpix % 8:
        raise InputError(path, f"NIfTI header is malformed (dim {list(dim)}, bitpix {bitpix})")
    if not math.isfinite(offset) or offset < 0:
        raise InputError(path, f"NIfTI header is malformed (vox_offset {offset})")
    floats = np.dtype(endian + NIFTI_FLOAT_TYPES[datatype]) if datatype in NIFTI_FLOAT_TYPES else None
    return NiftiLayout(int(offset), math.prod(dim[1 : ndim + 1]) * bitpix // 8, floats)


class _FiniteCheck:
    """Fed the file's bytes in order, refuses a non-finite float inside the voxel data."""

    def __init__(self, path: Path, layout: NiftiLayout):
        self.path, self.layout = path, layout
        self.pos = 0
        self.carry = b""

    def feed(self, chunk: bytes) -> None:
        layout = self.layout
        lo = max(layout.offset - self.pos, 0)
        hi = min(layout.offset + layout.need - self.pos, len(chunk))
        self.pos += len(chunk)
        if layout.floats is None or lo >= hi:
            return
        data = self.carry + chunk[lo:hi]
        usable = len(data) - len(data) % layout.floats.itemsize
        self.carry = data[usable:]
        if not np.isfinite(np.frombuffer(data[:usable], dtype=layout.floats)).all():
            raise InputError(self.path, "image contains NaN or infinite voxels")

    @property
    def done(self) -> bool:
        return self.pos >= self.layout.offset + self.layout.need


def _verify_nifti(path: Path) -> None:
    """Length, gzip integrity (the whole stream, to its checksum) and, for float voxels,
    finiteness, in one streaming pass."""
    compressed = _starts_with_gzip(path)
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
            chunk = f.read(540)
            layout = nifti_layout(path, chunk)
            check = _FiniteCheck(path, layout)
            if not compressed and layout.floats is None:
                have = path.stat().st_size - layout.offset
            else:
                while chunk:
                    check.feed(chunk)
                    if not compressed and check.done:
                        break
                    chunk = f.read(CHUNK)
                have = (path.stat().st_size if not compressed else check.pos) - layout.offset
    except EOFError:
        raise DamagedData(path, "compressed file is truncated (the gzip stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DamagedData(path, f"compressed file is corrupt ({e})") from None
    if have < layout.need:
        raise _short(path, max(have, 0), layout.need)


# --- NRRD (.nrrd, attached raw or gzip data) ---------------------------------------------------


def _verify_nrrd(path: Path, need: int) -> None:
    """Attached raw or gzip data; other encodings and detached data are left to ITK, whose NRRD
    reader counts them itself."""
    with open(path, "rb") as f:
        head = f.read(HEADER_LIMIT)
    end = head.find(b"\n\n")
    if not head.startswith(b"NRRD") or end < 0:
        raise InputError(path, "not a NRRD file (no NRRD magic or no end of header)")
    fields = {}
    for line in head[:end].decode("latin-1").splitlines()[1:]:
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.lstrip("=").strip()
    if any(k in fields for k in ("data file", "datafile", "byte skip", "byteskip", "line skip", "lineskip")):
        return
    encoding = fields.get("encoding", "")
    offset = end + 2
    if encoding == "raw":
        have = path.stat().st_size - offset
    elif encoding in ("gzip", "gz"):
        with open(path, "rb") as f:
            f.seek(offset)
            have = _inflated_length(f, path, 16 + zlib.MAX_WBITS)
    else:
        return
    if have < need:
        raise _short(path, have, need)


def verify_voxel_data(path: Path, declared_bytes: int) -> None:
    """Refuse a file whose voxel data is shorter than declared, or damaged where compressed.

    ``declared_bytes``: voxels x components x bytes per component, from ITK's reading of the
    header (NIfTI files are checked against their own header, whose on-disk type may differ
    from the type ITK scales it to)."""
    name = path.name.lower()
    try:
        if name.endswith((".mha", ".mhd")):
            _verify_meta(path)
        elif name.endswith((".nii", ".nii.gz")):
            _verify_nifti(path)
        elif name.endswith(".nrrd"):
            _verify_nrrd(path, declared_bytes)
    except OSError as e:
        raise DamagedData(path, f"cannot read {e.filename or 'it'}: {e.strerror or e}") from None
