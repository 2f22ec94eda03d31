"""The README is a newcomer's page: short, and its Python example runs as printed and gives the
command line's mask."""
from __future__ import annotations

import os
import re

import numpy as np
import SimpleITK as sitk

from conftest import ROOT
from panther_seg.cli import main

README = ROOT / "README.md"
SMOKE = next((ROOT / "test" / "input" / "images" / "abdominal-t1-mri").glob("*.mha"))


def test_the_readme_stays_under_1200_words():
    assert len(README.read_text().split()) <= 1200


def test_the_readme_api_example_runs_and_equals_the_command_line(tmp_path, monkeypatch):
    text = README.read_text()
    section = text[text.index("## Python API"):]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    sitk.WriteImage(sitk.ReadImage(str(SMOKE)), str(tmp_path / "scan.nii.gz"))
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {})
    assert main(["-i", str(tmp_path / "scan.nii.gz"), "-o", str(tmp_path / "cli.nii.gz"), "--fast"]) == 0
    api, cli = sitk.ReadImage("mask.nii.gz"), sitk.ReadImage("cli.nii.gz")
    assert np.array_equal(sitk.GetArrayViewFromImage(api), sitk.GetArrayViewFromImage(cli))
    assert api.GetSize() == cli.GetSize() and api.GetOrigin() == cli.GetOrigin()
    assert os.path.getsize("mask.nii.gz") > 0
