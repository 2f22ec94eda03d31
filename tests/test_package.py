"""The project installs as a package researchers use like nnU-Net or TotalSegmentator:
``pip install .`` from the clone, then ``panther-seg -i <image> -o <mask>`` with the baked
weights, wherever the command runs from."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import SimpleITK as sitk

from conftest import ROOT, requires_shared

COMMANDS = ("panther-seg", "panther-seg-train", "panther-seg-evaluate", "panther-seg-benchmark", "panther-seg-resources")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment with ``pip install --no-deps .`` of this clone (a wheel, not
    editable); the pinned dependencies come from the test environment through a .pth file, so
    that nothing large is downloaded."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(ROOT)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


@pytest.mark.slow
def test_pip_install_gives_the_commands(installed, tmp_path):
    for command in COMMANDS:
        done = subprocess.run([str(installed / "bin" / command), "--help"], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0 and "usage:" in done.stdout, (command, done.stderr[-2000:])


@pytest.mark.slow
def test_the_installed_command_segments_the_real_mri_with_the_baked_weights(installed, tmp_path):
    source = requires_shared("data", "real-mri", "example_mr_sm.nii.gz")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(installed / "bin" / "panther-seg"), "-i", str(source), "-o", str(tmp_path / "mask.nii.gz"), "--fast"],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{installed}/share/panther-seg/resources/segformer3d.pt" in done.stdout  # the wheel's copy, not the clone's
    image, mask = sitk.ReadImage(str(source)), sitk.ReadImage(str(tmp_path / "mask.nii.gz"))
    assert all(getattr(mask, g)() == getattr(image, g)() for g in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"))
