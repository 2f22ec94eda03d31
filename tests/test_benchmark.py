"""The benchmark command runs the real pipeline and reports stages, memory and the machine."""
from __future__ import annotations

import json

from panther_seg.benchmark import main


def test_benchmark_reports_every_stage_the_window_comparison_and_the_machine(tmp_path, small_checkpoint, capsys):
    out = tmp_path / "bench.json"
    assert main(["--shape", "20", "64", "80", "--device", "cpu", "--checkpoint", str(small_checkpoint),
                 "--window-repeats", "1", "--nnunet", "off", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_cores"] >= 1 and report["machine"]["torch"]
    window = report["window"]
    assert window["ours_s"] > 0 and window["reference_s"] > 0 and window["gflop_per_window"] > 0
    assert 0 < window["fraction_of_matmul"]
    (run,) = report["runs"]
    assert run["case"] == "custom" and run["protocol"] == "fast"
    assert set(run["stages_s"]) == {"read", "preprocess", "network", "postprocess", "to input grid", "write"}
    assert all(v > 0 for v in run["peak_ram_gib"].values())
    assert "machine:" in capsys.readouterr().out
