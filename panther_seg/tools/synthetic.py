"""Synthetic PANTHER-like cases, for tests, benchmarks and the demonstration checkpoint.

The real images cannot leave the challenge, so geometry and intensities are drawn from the
organisers' published fingerprint (../shared/panther/README.md beside a clone): z spacing 3.0 mm for
most cases, in-plane 1.1875 mm (0.69-1.31), shapes around 72 x 258 x 318 (z, y, x), raw scanner
units without a zero background, tumour intensities around 207 +- 88. The anatomy (an ellipsoid
abdomen with liver, kidneys, spine, aorta, a curved pancreas and a hypo-intense tumour in it) is
laid out in coordinates relative to the field of view, so that small test shapes still contain
every structure. Everything is NumPy + SimpleITK and deterministic from the seed.

``python -m panther_seg.tools.synthetic OUT_DIR --cases N [--seed S] [--shape Z Y X]`` writes
``OUT_DIR/imagesTr/<case>_0000.mha`` and ``OUT_DIR/labelsTr/<case>.mha`` (a split, when one is
wanted: ``python -m panther_seg.training.splits OUT_DIR --folds K``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..config import IMAGE_CHANNEL_SUFFIX, PANCREAS, TRAINING_IMAGES_DIR, TRAINING_LABELS_DIR, TUMOUR

MEDIAN_SHAPE_ZYX = (72, 258, 318)
MEDIAN_SPACING_XYZ = (1.1875, 1.1875, 3.0)

# Raw intensity levels (scanner units) of the tissues, before bias field and noise.
AIR, BODY, FAT, LIVER, KIDNEY, SPINE, AORTA, PANCREAS_LEVEL, TUMOUR_LEVEL = 25, 300, 420, 360, 470, 150, 620, 330, 235


def draw_geometry(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Shape (z, y, x) and spacing (x, y, z) with the fingerprint's distribution."""
    z_sp = 3.0 if rng.random() < 0.9 else float(rng.choice([3.3, 3.5]))
    xy_sp = 1.1875 if rng.random() < 0.8 else float(rng.uniform(0.694, 1.3125))
    fov_y, fov_x = 258 * 1.1875 * rng.uniform(0.9, 1.15), 318 * 1.1875 * rng.uniform(0.95, 1.1)
    shape = (int(rng.integers(64, 89)), int(round(fov_y / xy_sp)), int(round(fov_x / xy_sp)))
    return shape, (xy_sp, xy_sp, z_sp)


def _ellipsoid(z: np.ndarray, y: np.ndarray, x: np.ndarray, centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2 <= 1


def _smooth_field(shape: Sequence[int], rng: np.random.Generator, strength: float) -> np.ndarray:
    """A smooth multiplicative field (low-order polynomial in normalised coordinates)."""
    z, y, x = np.ogrid[-1 : 1 : shape[0] * 1j, -1 : 1 : shape[1] * 1j, -1 : 1 : shape[2] * 1j]
    c = rng.normal(0, strength, 6)
    field = 1 + c[0] * z + c[1] * y + c[2] * x + c[3] * y * x + c[4] * y**2 + c[5] * x**2
    return np.clip(field, 0.6, 1.4).astype(np.float32)


def make_arrays(
    shape_zyx: Sequence[int], rng: np.random.Generator, noise_sd: float = 30.0, bias_strength: float = 0.08
) -> tuple[np.ndarray, np.ndarray]:
    """Image (int16) and label (uint8) arrays (z, y, x) of one synthetic abdomen."""
    d, h, w = (int(s) for s in shape_zyx)
    # normalised coordinates: z, y, x in [-1, 1] over the field of view; y grows posteriorly
    z, y, x = (a.astype(np.float32) for a in np.ogrid[-1 : 1 : d * 1j, -1 : 1 : h * 1j, -1 : 1 : w * 1j])
    jitter = lambda s=0.05: float(rng.normal(0, s))  # noqa: E731

    image = np.full((d, h, w), AIR, dtype=np.float32)
    body_r = (3.0, 0.80 + jitter(0.04), 0.88 + jitter(0.04))
    body = _ellipsoid(z, y, x, (0, 0.02, 0), body_r)
    image[body] = BODY
    inner = _ellipsoid(z, y, x, (0, 0.02, 0), (3.0, body_r[1] - 0.08, body_r[2] - 0.08))
    image[body & ~inner] = FAT  # subcutaneous fat
    organs = (
        (LIVER, (0.1 + jitter(), -0.1 + jitter(), -0.45 + jitter()), (0.9, 0.45, 0.35)),
        (KIDNEY, (0.25 + jitter(), 0.35 + jitter(0.02), -0.35 + jitter(0.02)), (0.35, 0.12, 0.09)),
        (KIDNEY, (0.3 + jitter(), 0.35 + jitter(0.02), 0.35 + jitter(0.02)), (0.35, 0.12, 0.09)),
        (SPINE, (0, 0.52, jitter(0.01)), (3.0, 0.11, 0.08)),
        (AORTA, (0, 0.3, 0.06 + jitter(0.01)), (3.0, 0.04, 0.035)),
    )
    for level, centre, radii in organs:
        image[_ellipsoid(z, y, x, centre, radii) & inner] = level

    # pancreas: a tube along x whose centre line curves in y and z, thinning towards the tail
    x0, x1 = -0.25 + jitter(0.03), 0.45 + jitter(0.03)
    t = np.clip((x - x0) / (x1 - x0), 0, 1)
    phase, amp = rng.uniform(0, np.pi), 0.06 + jitter(0.01)
    yc = 0.12 + jitter(0.02) + amp * np.sin(np.pi * t + phase) - 0.08 * t
    zc = jitter(0.05) - 0.15 * t
    ry = (0.085 + jitter(0.005)) * (1 - 0.4 * t)
    rz = (0.25 + jitter(0.02)) * (1 - 0.35 * t)
    pancreas = (((y - yc) / ry) ** 2 + ((z - zc) / rz) ** 2 <= 1) & (x >= x0) & (x <= x1) & inner
    image[pancreas] = PANCREAS_LEVEL + jitter(15)

    # tumour: a hypo-intense ellipsoid centred on the pancreas' centre line
    tc = float(rng.uniform(0.1, 0.7))
    tx = x0 + tc * (x1 - x0)
    ty = 0.12 + amp * np.sin(np.pi * tc + phase) - 0.08 * tc
    tz = -0.15 * tc
    scale = float(rng.uniform(0.8, 1.4))
    t_r = (0.16 * scale, 0.075 * scale, 0.07 * scale)
    tumour = _ellipsoid(z, y, x, (tz, ty, tx), t_r) & inner
    image[tumour] = TUMOUR_LEVEL + jitter(20)

    texture = rng.standard_normal((max(d // 4, 2), max(h // 8, 2), max(w // 8, 2)), dtype=np.float32)
    texture = _upsample(texture, (d, h, w))
    image += np.where(tumour, 110.0, 15.0) * texture
    image *= _smooth_field((d, h, w), rng, bias_strength)
    noise = noise_sd * rng.standard_normal((2, d, h, w), dtype=np.float32)
    image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2)  # Rician magnitude: no zero background
    image = np.clip(np.rint(image), 1, 2000).astype(np.int16)

    label = np.zeros((d, h, w), dtype=np.uint8)
    label[pancreas] = PANCREAS
    label[tumour] = TUMOUR
    return image, label


def _upsample(a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-index upsampling then a cheap box blur: a smooth random texture."""
    idx = [np.minimum((np.arange(n) * a.shape[i]) // n, a.shape[i] - 1) for i, n in enumerate(shape)]
    out = a[np.ix_(*idx)]
    for axis in range(3):
        out = (out + np.roll(out, 1, axis) + np.roll(out, -1, axis)) / 3
    return out


def make_case(
    seed: int,
    shape_zyx: Sequence[int] | None = None,
    spacing_xyz: Sequence[float] | None = None,
    noise_sd: float = 30.0,
    bias_strength: float = 0.08,
) -> tuple[sitk.Image, sitk.Image]:
    """One synthetic case (int16 image, uint8 label with 1 tumour and 2 pancreas), identity
    direction. Shape and spacing are drawn from the fingerprint unless given."""
    rng = np.random.default_rng(seed)
    drawn_shape, drawn_spacing = draw_geometry(rng)
    shape = tuple(shape_zyx) if shape_zyx is not None else drawn_shape
    spacing = tuple(float(s) for s in spacing_xyz) if spacing_xyz is not None else drawn_spacing
    image_arr, label_arr = make_arrays(shape, rng, noise_sd, bias_strength)
    origin = (-0.5 * shape[2] * spacing[0], -0.5 * shape[1] * spacing[1], float(rng.uniform(-300, -100)))
    images = []
    for arr in (image_arr, label_arr):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing)
        img.SetOrigin(origin)
        images.append(img)
    return images[0], images[1]


def case_name(index: int) -> str:
    """PANTHER-style id (``10011_0001``); 9xxxx marks synthetic cases."""
    return f"{90000 + index:05d}_0001"


def write_dataset(
    out_dir: Path, cases: int, seed: int = 0, shape_zyx: Sequence[int] | None = None,
    spacing_xyz: Sequence[float] | None = None, first_case: int = 0,
) -> list[str]:
    """Write ``cases`` synthetic cases in nnU-Net/PANTHER naming."""
    out_dir = Path(out_dir)
    (out_dir / TRAINING_IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    (out_dir / TRAINING_LABELS_DIR).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(first_case, first_case + cases):
        name = case_name(i)
        image, label = make_case(seed * 100003 + i, shape_zyx, spacing_xyz)
        sitk.WriteImage(image, str(out_dir / TRAINING_IMAGES_DIR / f"{name}{IMAGE_CHANNEL_SUFFIX}.mha"), useCompression=True)
        sitk.WriteImage(label, str(out_dir / TRAINING_LABELS_DIR / f"{name}.mha"), useCompression=True)
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m panther_seg.tools.synthetic", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--cases", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), help="fixed shape (default: drawn per case)")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="fixed spacing in mm (default: drawn per case)")
    p.add_argument("--first-case", type=int, default=0, help="index of the first case id (90000 + index), to keep sets apart")
    args = p.parse_args(argv)
    names = write_dataset(args.out_dir, args.cases, args.seed, args.shape, args.spacing, args.first_case)
    print(f"wrote {len(names)} cases to {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
