"""The memory budget: declared image sizes and network grids are refused before they are
allocated, with the size and the limit named; the limit comes from --memory-limit, else
$PANTHER_MEMORY_LIMIT_GIB, else the container's cgroup limit or the RAM, less a 1 GiB reserve
(tests/test_memory_cgroup.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import blob_volume, write_image
from fuzz_cases import meta_field, run_cli, source_image, write
from panther_seg.system import memory as limits
from panther_seg.cli import main
from panther_seg.config import MEMORY_LIMIT_ENV, RUNTIME_RESERVE_GIB
from panther_seg.errors import InputError
from panther_seg.system.memory import GIB, MemoryBudget
from panther_seg.contract.stats import NormalisationStats, write_stats_csv


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)


def test_limit_comes_from_the_option_else_the_environment_else_the_machine(monkeypatch):
    assert MemoryBudget.resolve() == MemoryBudget.from_machine()
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "7.5")
    assert MemoryBudget.resolve() == MemoryBudget(7.5, f"${MEMORY_LIMIT_ENV}")
    assert MemoryBudget.resolve(3) == MemoryBudget(3, "--memory-limit")


def test_each_caller_holds_its_own_budget():
    """Nothing global: a budget given to one run does not change another's."""
    small, default = MemoryBudget(1.0, "test"), MemoryBudget.resolve()
    with pytest.raises(InputError, match="over the limit of 1 GiB"):
        small.check_image_size("x.mha", (512, 512, 200), 2)
    default.check_image_size("x.mha", (512, 512, 200), 2)


@pytest.mark.parametrize("value", ["lots", "0", "-1", "nan", "inf"])
def test_a_bad_environment_value_is_a_clean_error(value, monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, value)
    with pytest.raises(InputError, match=f"{MEMORY_LIMIT_ENV}: environment variable must be a positive number"):
        MemoryBudget.resolve()


def test_declared_image_size_over_the_limit_names_size_and_limit():
    budget = MemoryBudget(15, "--memory-limit")
    budget.check_image_size("x.mha", (512, 512, 200), 2)  # a large MRI fits grand-challenge's 16 GB
    with pytest.raises(InputError) as e:
        budget.check_image_size("x.mha", (2000, 2000, 1000), 2)
    assert str(e.value) == ("x.mha: image of 2000 x 2000 x 1000 voxels (2 bytes each) needs about 31.8 GiB of memory, "
                            "over the limit of 15 GiB (--memory-limit)")


def test_target_grid_counts_the_input_still_held():
    size = (1000, 1000, 200)  # 2e8 voxels of network grid
    estimate = limits.target_bytes(size) / GIB + RUNTIME_RESERVE_GIB
    budget = MemoryBudget(estimate + 0.01, "--memory-limit")
    budget.check_target_grid("x.mha", size)
    with pytest.raises(InputError, match=r"x.mha: network grid of 1000 x 1000 x 200 voxels \(x, y, z\) needs about"):
        budget.check_target_grid("x.mha", size, input_size_xyz=(500, 500, 100), input_bytes_per_voxel=2)


def stats_file(path: Path, spacing: float) -> Path:
    write_stats_csv(NormalisationStats((spacing,) * 3, (spacing,) * 3, (320.0, 260.0, 72.0)), path)
    return path


def test_statistics_with_a_tiny_target_spacing_are_refused_cleanly(tmp_path, small_checkpoint, capsys):
    write_image(tmp_path / "in" / "x.mha", blob_volume((16, 48, 64)))
    code = main(["--batch", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"), "--checkpoint", str(small_checkpoint),
                 "--stats", str(stats_file(tmp_path / "s.csv", 0.001))])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"error: {tmp_path / 's.csv'}: statistics file malformed: field 'median_spacing': spacing")
    assert not (tmp_path / "out").exists()


def test_network_grid_over_the_limit_is_refused_before_resampling(tmp_path, small_checkpoint, capsys):
    """0.5 mm statistics turn a 60 x 60 x 16 image at 3 mm into 360 x 360 x 96 voxels."""
    image = tmp_path / "in" / "x.mha"
    write_image(image, blob_volume((16, 60, 60)), spacing=(3.0, 3.0, 3.0))
    code = main(["--batch", str(image), "--output-dir", str(tmp_path / "out"), "--checkpoint", str(small_checkpoint), "--fast",
                 "--stats", str(stats_file(tmp_path / "s.csv", 0.5)), "--memory-limit", str(RUNTIME_RESERVE_GIB + 0.3)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"error: {image}: network grid of 360 x 360 x 96 voxels (x, y, z) needs about ")
    assert "over the limit of 2.3 GiB (--memory-limit)" in err[0]
    assert not any(p.is_file() for p in tmp_path.joinpath("out").rglob("*"))


def test_an_absurd_image_spacing_is_refused_cleanly(tmp_path, small_checkpoint, capsys):
    path = meta_field(write(source_image(), tmp_path / "x.mha"), "ElementSpacing", "1e6 1e6 1e6")
    code = main(["--batch", str(path), "--output-dir", str(tmp_path / "out"), "--checkpoint", str(small_checkpoint), "--fast"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "implausible voxel spacing" in err[0]


def test_a_huge_declared_size_is_refused_without_allocating_it(tmp_path, small_checkpoint):
    """2000 x 2000 x 1000 int16 voxels declared over 76 kB of data, under the default limit (this
    machine's, as the child resolves it too; skipped where that exceeds the declared 31.8 GiB):
    the child process stays at the size of the interpreter, torch and the network."""
    default = MemoryBudget.resolve()
    if default.limit_gib > 31.8:
        pytest.skip(f"this machine's default budget ({default.describe()}) holds the declared image")
    path = meta_field(write(source_image(), tmp_path / "in" / "huge.mha"), "DimSize", "2000 2000 1000")
    run = run_cli(["--batch", str(path), "--output-dir", str(tmp_path / "out"), "--checkpoint", str(small_checkpoint)], tmp_path)
    assert run.returncode == 1
    assert run.error_lines() == [f"error: {path}: image of 2000 x 2000 x 1000 voxels (2 bytes each) needs about 31.8 GiB of memory, "
                                 f"over the limit of {default.limit_gib:g} GiB ({default.source})"]
    print(f"peak RSS of the refused 2000 x 2000 x 1000 header: {run.peak_rss_bytes / GIB:.2f} GiB")
    assert run.peak_rss_bytes < 1.5 * GIB
    assert path.is_file() and not (tmp_path / "out").exists()
