"""The cohort command on a local Ray (2 CPUs, small network, tiny images, --fast): the same
outputs as batch mode, every case exactly once when a worker or the driver dies, bad cases
recorded with their error and never stopping the cohort.

One Ray instance serves the whole module (its start-up costs seconds); the driver-kill test runs
the command in subprocesses that join it with --address."""
from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cohort]' or '.[dev]')")

from cohort_crash_hook import FLAG_ENV  # noqa: E402
from conftest import ROOT, blob_volume, write_image  # noqa: E402
from panther_seg import InputError, cli  # noqa: E402
from panther_seg.cohort.cli import options_fingerprint, parse_args, run_cohort  # noqa: E402
from panther_seg.cohort.manifest import MANIFEST_NAME, CaseRecord, Manifest, join_checksums  # noqa: E402
from panther_seg.io.files import sha256  # noqa: E402

SHAPE = (16, 48, 64)
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory: pytest.TempPathFactory):
    flag = tmp_path_factory.mktemp("crash") / "flag"
    path = os.pathsep.join(p for p in (str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "cohort_crash_hook.install",
                          "env_vars": {FLAG_ENV: str(flag), "PYTHONPATH": path}})
    yield flag
    ray.shutdown()


@pytest.fixture(autouse=True)
def no_stale_log_handlers():
    """cli.main points the logger at the stdout pytest captured for that test: drop it after."""
    yield
    logging.getLogger("panther_seg").handlers.clear()


def make_cases(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        paths.append(folder / f"case{i:02d}.nii.gz")
        write_image(paths[-1], blob_volume(SHAPE, i), spacing=(1.0, 1.0, 2.5), origin=(float(i), 2.0, 3.0))
    return paths


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / MANIFEST_NAME, newline="") as f:
        return list(csv.DictReader(f))


def same_image(a: Path, b: Path) -> None:
    x, y = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    assert x.GetSize() == y.GetSize() and x.GetSpacing() == y.GetSpacing()
    assert x.GetOrigin() == y.GetOrigin() and x.GetDirection() == y.GetDirection() and x.GetPixelID() == y.GetPixelID()
    assert np.array_equal(sitk.GetArrayViewFromImage(x), sitk.GetArrayViewFromImage(y))


def test_same_outputs_as_batch_mode_and_bad_cases_recorded(tmp_path, small_checkpoint, ray_session, capsys):
    good = make_cases(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.mha").write_text("not an image")
    (tmp_path / "csv_dir").mkdir()
    for p in good[1:]:
        p.rename(tmp_path / "csv_dir" / p.name)
    listed = tmp_path / "csv_dir" / "list.csv"  # paths in a CSV are relative to its folder
    listed.write_text("path\n" + "\n".join(p.name for p in good[1:]) + "\n")
    options = ["--checkpoint", str(small_checkpoint), "--fast", "--save-pancreas"]
    own, args = parse_args([str(good[0]), str(tmp_path / "in" / "broken.mha"), str(listed),
                            "-o", str(tmp_path / "cohort"), *options])
    assert args.fast and args.save_pancreas and own.output == tmp_path / "cohort"
    summary = run_cohort(own.inputs, own.output, args, workers=2)
    assert summary.counts["done"] == 3 and summary.counts["refused"] == 1 and not summary.ok
    by_case = {r["case"]: r for r in rows(own.output)}
    assert set(by_case) == {"case00.nii.gz", "case01.nii.gz", "case02.nii.gz", "broken.mha"}
    assert by_case["broken.mha"]["status"] == "refused" and "broken.mha" in by_case["broken.mha"]["error"]
    assert all(float(by_case[f"case0{i}.nii.gz"]["tumour_ml"]) >= 0 for i in range(3))

    batch_inputs = [str(good[0]), str(tmp_path / "csv_dir")]
    assert cli.main(["-i", *batch_inputs, "-o", str(tmp_path / "batch"), *options]) == 0
    capsys.readouterr()
    batch_files = sorted(p.name for p in (tmp_path / "batch").iterdir())
    cohort_files = sorted(p.name for p in own.output.iterdir() if p.name != MANIFEST_NAME)
    assert batch_files == cohort_files == sorted(f"case0{i}{s}.nii.gz" for i in range(3) for s in ("", "_pancreas"))
    for name in batch_files:
        same_image(tmp_path / "batch" / name, own.output / name)
    for i in range(3):
        recorded = Manifest.load(own.output).rows[f"case0{i}.nii.gz"].checksums()
        assert recorded == {n: sha256(own.output / n) for n in (f"case0{i}.nii.gz", f"case0{i}_pancreas.nii.gz")}

    before = {p.name: p.stat().st_ino for p in own.output.iterdir() if p.name != MANIFEST_NAME}
    again = run_cohort(own.inputs, own.output, args, workers=2)  # rerun: only the refused case is redone
    assert again.skipped == 3 and [r.case for r in again.rows] == ["broken.mha"]
    assert before == {p.name: p.stat().st_ino for p in own.output.iterdir() if p.name != MANIFEST_NAME}


def test_a_killed_worker_still_gives_every_case_exactly_once(tmp_path, small_checkpoint, ray_session):
    make_cases(tmp_path / "in", 4)
    ray_session.write_text("case02.nii.gz")  # the worker about to segment it dies (tests/cohort_crash_hook.py)
    own, args = parse_args([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--checkpoint", str(small_checkpoint), "--fast"])
    summary = run_cohort(own.inputs, own.output, args, workers=2)
    assert not ray_session.exists(), "no worker died"
    assert summary.ok and summary.counts["done"] == 4
    recorded = rows(own.output)
    assert sorted(r["case"] for r in recorded) == [f"case0{i}.nii.gz" for i in range(4)]
    assert {r["case"]: int(r["attempts"]) for r in recorded}["case02.nii.gz"] == 2
    assert sorted(p.name for p in own.output.iterdir()) == sorted([MANIFEST_NAME] + [f"case0{i}.nii.gz" for i in range(4)])


def test_a_killed_driver_resumes_without_rewriting_finished_outputs(tmp_path, small_checkpoint, ray_session):
    make_cases(tmp_path / "in", 6)
    (tmp_path / "in" / "truncated.nii.gz").write_bytes(b"\x1f\x8b\x08\x00")
    out = tmp_path / "out"
    address = ray.get_runtime_context().gcs_address
    command = [sys.executable, "-m", "panther_seg.cohort.cli", str(tmp_path / "in"), "-o", str(out), "--address", address,
               "--checkpoint", str(small_checkpoint), "--fast", "--workers", "1", "--in-flight", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and driver.poll() is None:
        if (out / MANIFEST_NAME).is_file() and len(rows(out)) >= 1:
            break
        time.sleep(0.05)
    assert driver.poll() is None, driver.communicate()[0].decode()
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    first = rows(out)
    assert 1 <= len(first) < 7
    finished = {r["case"]: (out / r["case"]).stat() for r in first if r["status"] == "done"}
    assert finished

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr  # the truncated case is refused
    final = rows(out)
    assert sorted(r["case"] for r in final) == sorted([f"case0{i}.nii.gz" for i in range(6)] + ["truncated.nii.gz"])
    statuses = {r["case"]: r["status"] for r in final}
    assert statuses.pop("truncated.nii.gz") == "refused" and set(statuses.values()) == {"done"}
    assert "truncated.nii.gz" in {r["case"]: r["error"] for r in final}["truncated.nii.gz"]
    for name, stat in finished.items():
        now = (out / name).stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), f"{name} was rewritten"
    assert "1 refused" in rerun.stdout and "skipped (done before)" in rerun.stdout
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp_")]


def test_a_bad_checkpoint_stops_the_cohort_before_any_case(tmp_path, ray_session):
    make_cases(tmp_path / "in", 1)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    own, args = parse_args([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "bad.pt")])
    with pytest.raises(InputError, match="bad.pt"):
        run_cohort(own.inputs, own.output, args, workers=1)
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_a_changed_output_or_option_makes_a_case_due_again_but_the_memory_limit_does_not(tmp_path):
    mask = tmp_path / "a.nii.gz"
    mask.write_bytes(b"mask")
    manifest = Manifest(tmp_path / MANIFEST_NAME)
    manifest.record(CaseRecord("a.nii.gz", "in/a.nii.gz", "done", outputs=join_checksums({mask.name: sha256(mask)}), options="o"))
    again = Manifest.load(tmp_path)
    assert again.verified("a.nii.gz", {"tumour": mask}, "o")
    assert not again.verified("a.nii.gz", {"tumour": mask}, "other options")
    assert not again.verified("a.nii.gz", {"tumour": mask, "pancreas": tmp_path / "a_pancreas.nii.gz"}, "o")
    mask.write_bytes(b"changed")
    assert not again.verified("a.nii.gz", {"tumour": mask}, "o")

    def fingerprint(*options: str) -> str:
        return options_fingerprint(parse_args([str(tmp_path), "-o", str(tmp_path / "out"), *options])[1])

    assert fingerprint("--memory-limit", "4") == fingerprint() != fingerprint("--fast")


def test_statistics_of_every_case_with_refusals_and_after_a_rerun(tmp_path, small_checkpoint, ray_session):
    from panther_seg.reporting.statistics import SCHEMA

    make_cases(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.mha").write_text("not an image")
    own, args = parse_args([str(tmp_path / "in"), "-o", str(tmp_path / "cohort"), "--checkpoint", str(small_checkpoint),
                            "--fast", "--statistics"])
    run_cohort(own.inputs, own.output, args, workers=1)
    again = run_cohort(own.inputs, own.output, args, workers=1)  # the done cases skipped, still in the CSV
    assert again.skipped == 2
    manifest = {r["case"]: r for r in rows(own.output)}
    for i in range(2):
        data = json.loads((own.output / f"case0{i}_statistics.json").read_text())
        assert data["schema"] == SCHEMA and data["status"] == "done" and data["case"] == f"case0{i}"
        assert data["measurements"]["tumour_volume_ml"] == pytest.approx(float(manifest[f"case0{i}.nii.gz"]["tumour_ml"]), abs=1e-3)
    with open(own.output / "statistics.csv", newline="") as f:
        table = {r["case"]: r for r in csv.DictReader(f)}
    assert set(table) == {"case00", "case01", "broken"}
    assert table["broken"]["status"] == "refused" and "broken.mha" in table["broken"]["error"]
    assert table["case00"]["status"] == "done" and table["case00"]["tumour_volume_ml"] != ""
