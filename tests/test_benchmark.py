"""The benchmark command runs the real pipeline and reports stages, memory and the machine."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from panther_seg.tools.benchmark import main


def test_benchmark_reports_every_stage_the_window_comparison_and_the_machine(tmp_path, small_checkpoint, capsys):
    out = tmp_path / "bench.json"
    assert main(["--shape", "20", "64", "80", "--device", "cpu", "--checkpoint", str(small_checkpoint),
                 "--window-repeats", "1", "--nnunet", "off", "--startup-repeats", "1", "--report-cases", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_cores"] >= 1 and report["machine"]["torch"]
    window = report["window"]
    assert window["ours_s"] > 0 and window["reference_s"] > 0 and window["gflop_per_window"] > 0
    assert 0 < window["fraction_of_matmul"]
    (run,) = report["runs"]
    assert run["case"] == "custom" and run["protocol"] == "fast"
    assert set(run["stages_s"]) == {"read", "preprocess", "network", "postprocess", "to input grid", "measure", "write", "preview"}
    assert 0 < run["at_a_glance_fraction"] < 1  # measurements and preview against the case's time
    assert report["report"]["cases"] == 2 and report["report"]["bytes_per_case"] > 0
    assert all(v > 0 for v in run["peak_ram_gib"].values())
    startup = report["startup"]  # fresh processes: --help, imports, checkpoint, a whole --fast run of the case
    (round_,) = startup["rounds"]
    assert set(round_["stages"]) == {"read", "preprocess", "network", "postprocess", "to input grid", "measure", "write"}
    assert all(startup[k] > 0 for k in ("help_s", "imports_s", "checkpoint_s", "case_wall_s", "case_stages_s", "fixed_s"))
    assert startup["fixed_s"] == pytest.approx(startup["case_wall_s"] - startup["case_stages_s"], abs=0.002)
    printed = capsys.readouterr().out
    assert "machine:" in printed
    assert "custom fast: measurements " in printed and "report of 2 PANTHER-median cases: " in printed
    assert "start-up (fresh processes, median of 1): --help " in printed and "fixed cost of a --fast case" in printed


def test_departures_reports_each_options_dice_from_the_default(tmp_path, tiny_window_checkpoint, monkeypatch, capsys):
    """On a case stored with flipped axes and voxels <= 0: the orientation and the normalisation
    move the mask, batching windows does not, and each row names its case and voxel counts."""
    from conftest import blob_volume

    from panther_seg.tools import departures

    def flipped_case():
        image = sitk.GetImageFromArray(np.ascontiguousarray(blob_volume((24, 40, 40))[:, ::-1, ::-1] - 190))
        image.SetSpacing((1.1875, 1.1875, 3.0))
        image.SetDirection((-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
        return image

    monkeypatch.setattr(departures, "cases", lambda: {"flipped": flipped_case})
    out = tmp_path / "departures.json"
    assert departures.main(["--checkpoint", str(tiny_window_checkpoint), "--device", "cpu", "--json", str(out)]) == 0
    rows = {r["departure"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {d.name for d in departures.DEPARTURES if not d.gpu_only}
    assert all(r["case"] == "flipped" and r["default_voxels"] > 0 for r in rows.values())
    assert rows["--batch-size 4 (not a departure: rounding only)"]["dice"] == 1.0
    assert rows["--orientation training"]["dice"] < 0.99 and rows["--normalise nonzero"]["dice"] < 1.0
    assert "machine:" in capsys.readouterr().out


def test_the_gpu_report_command_runs_on_the_cpu_and_writes_every_section(tmp_path, tiny_window_checkpoint, capsys):
    """``--device cuda --report DIR`` is for a GPU machine; the same command on the CPU with a tiny
    case (one window) and a small stand-in for the real MRI keeps it from rotting between GPU runs."""
    from conftest import blob_volume, write_image

    write_image(tmp_path / "real-mri" / "scan.nii.gz", blob_volume((16, 32, 32)))
    write_image(tmp_path / "real-mri" / "scan_seg.nii.gz", np.zeros((16, 32, 32), np.uint8))
    out = tmp_path / "report"
    assert main(["--device", "cpu", "--report", str(out), "--cases", "tiny", "--checkpoint", str(tiny_window_checkpoint),
                 "--window-repeats", "1", "--nnunet", "off", "--real-mri", str(tmp_path / "real-mri")]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["device"] == "cpu" and report["machine"]["cpu_cores"] >= 1 and report["machine"]["torch"]
    assert "skipped" in report["self_check"]
    window = report["window"]
    assert window["window"] == [32, 32, 32] and window["gflop_per_window"] > 0 and window["fp32_s"] > 0
    assert window["fp16_s"] is None and "GPU only" in window["fp16_note"]
    assert [(r["case"], r["protocol"], r["precision"]) for r in report["runs"]] == [("tiny", "default", "fp32"), ("tiny", "fast", "fp32")]
    assert all(r["total_s"] > 0 and set(r["stages_s"]) >= {"preprocess", "network", "write"} for r in report["runs"])
    real = report["real_mri"]
    assert real["image"] == "scan.nii.gz" and real["fp32_tumour_voxels"] >= 0 and real["fp32_pancreas_voxels"] >= 0
    assert real["dice"] is None
    assert report["skipped"] == [] and report["elapsed_s"] > 0
    page = (out / "report.md").read_text()
    assert "Machine:" in page and "## Per window" in page and "| tiny |" in page
    assert "machine:" in capsys.readouterr().out


def test_the_report_skips_the_runs_past_its_time_budget(tmp_path, tiny_window_checkpoint):
    out = tmp_path / "report"
    assert main(["--device", "cpu", "--report", str(out), "--cases", "tiny", "--checkpoint", str(tiny_window_checkpoint),
                 "--window-repeats", "1", "--nnunet", "off", "--budget-s", "0", "--real-mri", str(tmp_path / "none")]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["runs"] == [] and any("tiny default fp32" in s for s in report["skipped"])
