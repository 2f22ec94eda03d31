"""Batch mode with the stages overlapped (reader, network, writer threads) writes what the
sequential loop writes, reports each failure the same way and never lets one case stop others."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import blob_volume, write_image
from panther_seg import batch
from panther_seg.batch import batch_cases, run_batch
from panther_seg.cli import configure_logging
from panther_seg.inference.pipeline import Segmenter


@pytest.fixture(scope="module")
def segmenter(tiny_window_checkpoint: Path) -> Segmenter:
    return Segmenter.from_resources(tiny_window_checkpoint, device="cpu", no_tta=True, save_pancreas=True)


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    folder = tmp_path / "cases"
    write_image(folder / "a.mha", blob_volume((12, 40, 44), seed=1))
    write_image(folder / "b.mha", np.zeros((12, 40, 44), np.int16))  # constant: refused, in the middle
    write_image(folder / "c.nii.gz", blob_volume((10, 36, 50), seed=2))
    return folder


def run_folder(segmenter: Segmenter, inputs: Path, output: Path, overlap: bool) -> int:
    return run_batch(segmenter, batch_cases([inputs], output, segmenter.extras), output, overlap=overlap)


def run(segmenter: Segmenter, inputs: Path, output: Path, overlap: bool, capsys) -> tuple[int, list[str]]:
    configure_logging()
    code = run_folder(segmenter, inputs, output, overlap)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("error:")]


def test_overlapped_batch_writes_the_same_outputs_and_errors_as_sequential(segmenter, cases, tmp_path, capsys):
    code_seq, errors_seq = run(segmenter, cases, tmp_path / "seq", False, capsys)
    code_ovl, errors_ovl = run(segmenter, cases, tmp_path / "ovl", True, capsys)
    assert code_seq == code_ovl == 1
    assert errors_seq == errors_ovl and len(errors_seq) == 1 and f"{cases / 'b.mha'}: image is constant" in errors_seq[0]
    written = sorted(p.name for p in (tmp_path / "seq").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "ovl").iterdir())
    assert {"a.mha", "c.nii.gz"} <= set(written) and not any(n.startswith("b.") for n in written)
    for name in written:
        seq, ovl = sitk.ReadImage(str(tmp_path / "seq" / name)), sitk.ReadImage(str(tmp_path / "ovl" / name))
        assert np.array_equal(sitk.GetArrayFromImage(seq), sitk.GetArrayFromImage(ovl))
        assert (seq.GetSize(), seq.GetSpacing(), seq.GetOrigin(), seq.GetDirection()) == (
            ovl.GetSize(), ovl.GetSpacing(), ovl.GetOrigin(), ovl.GetDirection())


@pytest.mark.parametrize("overlap", [False, True])
def test_an_unexpected_error_stops_the_run_at_that_case_as_sequentially(segmenter, cases, tmp_path, monkeypatch, overlap):
    """Not an ``InputError`` (a bug, say): it propagates, and no later case is written."""
    (cases / "b.mha").unlink()
    write_image(cases / "b.mha", blob_volume((12, 40, 44), seed=3))
    real = segmenter.infer

    def broken_on_b(prepared, timings, source):
        if Path(source).name == "b.mha":
            raise RuntimeError("simulated bug")
        return real(prepared, timings, source)

    monkeypatch.setattr(segmenter, "infer", broken_on_b)
    configure_logging()
    with pytest.raises(RuntimeError, match="simulated bug"):
        run_folder(segmenter, cases, tmp_path / "out", overlap)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mha", "a_pancreas.mha"]


def test_cases_in_flight_are_bounded(segmenter, cases, tmp_path, monkeypatch, capsys):
    """At most ``CASES_IN_FLIGHT`` cases are read before the first one is written."""
    events: list[str] = []
    real_read, real_write = batch.read_image, batch.write_outputs
    monkeypatch.setattr(batch, "read_image", lambda *a, **k: (events.append("read"), real_read(*a, **k))[1])
    monkeypatch.setattr(batch, "write_outputs", lambda *a, **k: (events.append("write"), real_write(*a, **k))[1])
    (cases / "b.mha").unlink()
    for i in range(4):
        write_image(cases / f"d{i}.mha", blob_volume((12, 40, 44), seed=10 + i))
    run(segmenter, cases, tmp_path / "out", True, capsys)
    reads_ahead = 0
    for event in events:
        reads_ahead += 1 if event == "read" else -1
        assert reads_ahead <= batch.CASES_IN_FLIGHT
