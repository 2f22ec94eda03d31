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

COMMANDS = ("panther-seg", "panther-seg-train", "panther-seg-evaluate", "panther-seg-benchmark", "panther-seg-resources",
            "panther-seg-cohort", "panther-seg-report")


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


@pytest.mark.slow
def test_pip_install_puts_only_panther_seg_at_the_top_of_site_packages(installed):
    """No generic top-level name (a ``model`` package would shadow a user's own); the network
    ships inside the package."""
    site = Path(subprocess.run([str(installed / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = {p.name for p in site.iterdir() if not p.name.startswith(("_", "pip", "setuptools", "pkg_resources", "test-dependencies"))
            and not p.name.endswith((".dist-info", ".pth"))}
    assert ours == {"panther_seg"}
    assert (site / "panther_seg" / "network" / "segformer3d.py").is_file()
    assert (site / "panther_seg" / "reporting" / "vendor" / "niivue.umd.js").is_file()  # the report's viewer


BLOCKED = {  # command: (a module of its extra, the extra)
    "train": ("lightning", "train"),
    "evaluate": ("PIL", "train"),
}


@pytest.mark.parametrize("command", sorted(BLOCKED))
def test_a_command_whose_extra_is_missing_names_the_extra_in_one_line(command):
    """As after ``pip install .`` without ``[train]``: the module cannot be imported."""
    module, extra = BLOCKED[command]
    code = (f"import sys; sys.modules[{module!r}] = None; sys.argv = ['panther-seg-{command}', '--help']; "
            f"from panther_seg.commands import {command}; raise SystemExit({command}())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: panther-seg-{command} needs the '{extra}' extra ({module} is not installed): "
        f'pip install "panther-seg[{extra}]"']


@pytest.mark.parametrize("command", ["segment", "train", "evaluate", "benchmark", "resources", "report"])
def test_every_command_answers_help(command):
    code = f"import sys; sys.argv = ['x', '--help']; from panther_seg.commands import {command}; raise SystemExit({command}())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
