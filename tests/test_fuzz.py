"""Fuzz: some sixty odd and bad inputs made from a real MRI, through the real command line in
child processes. Each must end in an exact mask on its own grid (the very same mask as the plain
copy where only the file format or voxel type differs) or in one clean line ``error: <file>:
<problem>`` with nothing written; and neither child may go over the memory limit it was given."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from fuzz_cases import build_cases, run_cli, source_path
from panther_seg.io.outputs import batch_outputs

MEMORY_LIMIT_GIB = 3.0  # the budget both children run under (--memory-limit)
GIB = 2**30


def test_every_odd_input_gives_an_exact_mask_and_every_bad_one_a_clean_refusal(tmp_path, small_checkpoint):
    accepted, refused = tmp_path / "accepted", tmp_path / "refused"
    cases = build_cases(accepted, refused)
    good = [c for c in cases if c.outcome != "refused"]
    bad = [c for c in cases if c.outcome == "refused"]
    assert len(cases) >= 40 and len(good) >= 15 and len(bad) >= 25
    common = ["--checkpoint", str(small_checkpoint), "--fast", "--device", "cpu", "--memory-limit", str(MEMORY_LIMIT_GIB)]
    print(f"{len(cases)} inputs from {source_path()}: {len(good)} to segment, {len(bad)} to refuse")

    masks = tmp_path / "masks"
    ok = run_cli(["--batch", str(accepted), "--output-dir", str(masks), *common], tmp_path)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert ok.error_lines() == [], ok.stderr[-3000:]
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(masks / "ref.mha")))
    assert 0 < reference.sum() < reference.size  # a mask worth comparing others with
    for case in good:
        image = sitk.ReadImage(str(accepted / case.name))
        mask = sitk.ReadImage(str(masks / batch_outputs(accepted / case.name, masks).tumour.name))
        assert mask.GetSize() == image.GetSize() and mask.GetSpacing() == image.GetSpacing(), case
        assert mask.GetOrigin() == image.GetOrigin() and mask.GetDirection() == image.GetDirection(), case
        assert mask.GetPixelID() == sitk.sitkUInt8, case
        values = sitk.GetArrayViewFromImage(mask)
        assert set(np.unique(values)) <= {0, 1}, case
        if case.outcome == "same":
            assert np.array_equal(values, reference), case
    assert sorted(p.name for p in masks.iterdir()) == sorted(batch_outputs(accepted / c.name, masks).tumour.name for c in good)

    nothing = tmp_path / "nothing"
    no = run_cli(["--batch", str(refused), "--output-dir", str(nothing), *common], tmp_path)
    assert no.returncode == 1
    lines = no.error_lines()
    assert len(lines) == len(bad), "\n".join(lines)
    for case in bad:
        prefix = f"error: {refused / case.name}: "
        mine = [ln for ln in lines if ln.startswith(prefix)]
        assert len(mine) == 1 and case.fragment in mine[0], (case, mine)
    assert not nothing.exists() or not any(p.is_file() for p in nothing.rglob("*"))

    for run in (ok, no):
        print(f"peak RSS {run.peak_rss_bytes / GIB:.2f} GiB")
        assert run.peak_rss_bytes < MEMORY_LIMIT_GIB * GIB
