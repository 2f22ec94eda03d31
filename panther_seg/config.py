"""Every constant of the method in one place (the grand-challenge layout: io/grand_challenge.py)."""
from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# resources/ beside the code (a clone, an editable install, the image), else the copy a wheel
# installs under <prefix>/share/panther-seg/resources (pyproject.toml's data-files)
RESOURCES_DIR = next(
    (d for d in (PROJECT_ROOT / "resources", Path(sys.prefix) / "share" / "panther-seg" / "resources") if d.is_dir()),
    PROJECT_ROOT / "resources",
)
MODEL_TARBALL_DIR = Path("/opt/ml/model")  # grand-challenge extracts the optional model here
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
STATS_FILE_NAME = "mri_statistics.csv"
SHA256_FILE_NAME = "SHA256SUMS"

IMAGE_SUFFIXES = (".mha", ".mhd", ".nii", ".nii.gz", ".nrrd")
DICOM_SEG_SUFFIX = ".dcm"

# grand-challenge's roots and the tumour mask's interface (the rest of the layout: io/grand_challenge.py);
# here so that the command line's help names them without importing the I/O stack
GC_INPUT_ROOT = Path("/input")
GC_OUTPUT_ROOT = Path("/output")
GC_OUTPUT_SUBDIR = "images/pancreatic-tumor-segmentation"
GC_OUTPUT_NAME = "tumor_seg.mha"

# data sets (PANTHER and nnU-Net naming): <case>_0000.mha images beside <case>.mha labels, or in
# imagesTr/ and labelsTr/
IMAGE_CHANNEL_SUFFIX = "_0000"
TRAINING_IMAGES_DIR, TRAINING_LABELS_DIR = "imagesTr", "labelsTr"

# classes (the original checkpoint's; a project checkpoint may record others)
CLASS_NAMES = ("background", "tumour", "pancreas")
TUMOUR, PANCREAS = 1, 2

# preprocessing: the original protocol (docs/protocol.md), then the named departures
ANISOTROPY_RATIO = 3.0  # median z / median x at or above this: use the 10th-percentile z spacing
ZSCORE_EPSILON = 1e-6  # (v - mean) / (std + epsilon)
ORIENTATIONS = ("storage", "training")  # array in storage order (original) | reoriented to the training direction
RESAMPLINGS = ("always", "if-needed")  # always resample (original) | skip when the size would not change
NORMALISATIONS = ("positive", "nonzero")  # z-score statistics over voxels > 0 (original) | != 0

# sliding window (z, y, x): MONAI's SlidingWindowInferer as the original configured it
WINDOW = (32, 160, 208)
OVERLAP = 0.5
FAST_OVERLAP = 0.25
GAUSSIAN_SIGMA_SCALE = 0.125  # MONAI's default: sigma = 0.125 x window

# post-processing
FACE_CONNECTIVITY = 1  # scipy's connectivity rank: voxels sharing a face (6-neighbourhood); also the lesions' definition
TUMOUR_THRESHOLD = 0.45
PANCREAS_THRESHOLD = 0.5
MIN_COMPONENT_MM3 = 50.0
MIN_COMPONENT_FRACTION = 0.0005  # of the total predicted volume
SECOND_COMPONENT_RATIO = 0.2
PANCREAS_MARGIN_MM = 6.0

# confidence (panther_seg/inference/confidence.py): a case whose mirrorings agree with its final
# tumour mask less than this (mean Dice) is flagged for review; chosen by measurement (docs/confidence.md)
REVIEW_MEAN_DICE = 0.9

# measurements (panther_seg/reporting/measurements.py): size categories by the longest in-plane
# diameter, the AJCC T1/T2/T3 cut-offs for pancreatic tumours (size only, not a stage)
SIZE_CUTOFFS_MM = (20.0, 40.0)

# input sanity (checked on the header, before any voxel is read)
SPACING_RANGE_MM = (0.01, 100.0)  # plausible voxel spacing; outside it is a unit error (m, um) or a broken header
DIRECTION_TOLERANCE = 1e-3  # max |D^T D - I|: direction cosines must be orthonormal to this

# memory budget (panther_seg/limits.py): grand-challenge gives 16 GiB, 1 GiB of it reserved
MEMORY_LIMIT_ENV = "PANTHER_MEMORY_LIMIT_GIB"
MEMORY_RESERVE_GIB = 1.0  # kept back from the container's cgroup limit (or the RAM) when neither --memory-limit nor the variable is set: grand-challenge's own system reserve, /tmp's tmpfs files, the estimate's error
RUNTIME_RESERVE_GIB = 2.0  # interpreter, torch, the network before any image (1.5 GiB measured on the CPU)
INPUT_WORKING_BYTES_PER_VOXEL = 6  # per input voxel beyond its own bytes: float32 copy, mask, flags
TARGET_BYTES_PER_VOXEL = 48  # per network-grid voxel: z-score temporaries, the volume and its flipped copy, MONAI's weights
MEMBER_BYTES_PER_VOXEL = 64  # and per ensemble member: MONAI's stitched logits, their flip back, the sum, softmax (3 x 4 B each)

# DICOMweb (panther_seg/io/dicomweb.py): the password for --dicomweb-user comes from this variable only
DICOMWEB_PASSWORD_ENV = "PANTHER_DICOMWEB_PASSWORD"
DICOMWEB_TIMEOUT_S = 60.0  # per HTTP request to the PACS (connect and each read)
