"""A real scanner's volume (TotalSegmentator's test MRI, read in place from ../shared) through
the shipped path: the baked checkpoint, resampling to the target spacing, a mask on the input's
own grid."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from conftest import requires_shared
from panther_seg.cli import main


def test_real_mri_gets_a_mask_on_its_own_grid_with_the_baked_checkpoint(tmp_path, capsys):
    source = requires_shared("data", "real-mri", "example_mr_sm.nii.gz")
    assert main(["--batch", str(source), "--output-dir", str(tmp_path), "--fast"]) == 0
    assert "resources/segformer3d.pt (project resource)" in capsys.readouterr().out
    image = sitk.ReadImage(str(source))
    mask = sitk.ReadImage(str(tmp_path / "example_mr_sm.nii.gz"))
    assert mask.GetSize() == image.GetSize() and mask.GetSpacing() == image.GetSpacing()
    assert mask.GetOrigin() == image.GetOrigin() and mask.GetDirection() == image.GetDirection()
    assert set(np.unique(sitk.GetArrayViewFromImage(mask))) <= {0, 1}
