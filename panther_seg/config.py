"""Every constant of the method and of the grand-challenge interface, in one place."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESOURCES_DIR = PROJECT_ROOT / "resources"
MODEL_TARBALL_DIR = Path("/opt/ml/model")  # grand-challenge extracts the optional model here
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
STATS_FILE_NAME = "mri_statistics.csv"
SHA256_FILE_NAME = "SHA256SUMS"

# grand-challenge layout (PANTHER Task 1)
GC_INPUT_ROOT = Path("/input")
GC_OUTPUT_ROOT = Path("/output")
GC_IMAGES_SUBDIR = "images"
GC_INPUT_FALLBACK = "abdominal-t1-mri"
GC_OUTPUT_SUBDIR = "images/pancreatic-tumor-segmentation"
GC_OUTPUT_NAME = "tumor_seg.mha"
IMAGE_SUFFIXES = (".mha", ".mhd", ".nii", ".nii.gz", ".nrrd")

# classes
CLASS_NAMES = ("background", "tumour", "pancreas")
TUMOUR, PANCREAS = 1, 2

# preprocessing (nnU-Net's MRI strategy)
ANISOTROPY_RATIO = 3.0  # median z / median x at or above this: use the 10th-percentile z spacing
BSPLINE_ORDER = 3

# sliding window (z, y, x)
WINDOW = (32, 160, 208)
OVERLAP = 0.5
FAST_OVERLAP = 0.25
GAUSSIAN_SIGMA_SCALE = 1.0 / 8  # nnU-Net's importance map

# post-processing
TUMOUR_THRESHOLD = 0.45
PANCREAS_THRESHOLD = 0.5
MIN_COMPONENT_MM3 = 50.0
MIN_COMPONENT_FRACTION = 0.0005  # of the total predicted volume
SECOND_COMPONENT_RATIO = 0.2
PANCREAS_MARGIN_MM = 6.0
