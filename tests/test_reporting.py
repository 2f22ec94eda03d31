"""The preview picture and the browser report: written from real files through the real code,
and the report opened in a real browser (headless Chromium, software WebGL2)."""
from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from panther_seg import cli
from panther_seg.evaluation import report_command as report_cli
from panther_seg.overlay import TUMOUR_RGB
from panther_seg.reporting.preview import render_preview
from panther_seg.reporting.statistics import read_statistics
from panther_seg.reporting.statistics import to_json_dict, write_statistics_json
from panther_seg.results import Confidence, Lesion, Measurements, Segmentation

from chromium import Browser, find_chromium

SPACING = (1.5, 1.0, 4.0)  # anisotropic (x, y, z)
SHAPE_ZYX = (24, 72, 64)


def oblique_direction(degrees: float = 25.0) -> tuple[float, ...]:
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return tuple(rotation.ravel())


def scan_with_sphere(radius_mm: float = 12.0) -> tuple[sitk.Image, sitk.Image, sitk.Image, tuple[float, float, float]]:
    """An oblique, anisotropic scan with a sphere (tumour) and a slab (pancreas) around its centre:
    the sphere is round in physical space, not in voxels."""
    image = sitk.Image(SHAPE_ZYX[::-1], sitk.sitkInt16)
    image.SetSpacing(SPACING)
    image.SetDirection(oblique_direction())
    image.SetOrigin((-40.0, 20.0, -30.0))
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    index = np.indices(SHAPE_ZYX).reshape(3, -1)[::-1].T  # (x, y, z) indices
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    points = (index * SPACING) @ direction.T + np.asarray(image.GetOrigin())
    distance = np.linalg.norm(points - centre, axis=1).reshape(SHAPE_ZYX)
    rng = np.random.default_rng(0)
    voxels = (400 + 40 * rng.standard_normal(SHAPE_ZYX) - 150 * (distance < radius_mm)).astype(np.int16)
    masks = []
    for array in (distance < radius_mm, (distance >= radius_mm) & (distance < radius_mm + 6)):
        mask = sitk.GetImageFromArray(array.astype(np.uint8))
        mask.CopyInformation(image)
        masks.append(mask)
    scan = sitk.GetImageFromArray(voxels)
    scan.CopyInformation(image)
    return scan, masks[0], masks[1], tuple(centre)


def red_boxes(picture: Image.Image) -> list[tuple[int, int]]:
    """Width and height of the tumour outline in each third of the picture."""
    rgb = np.asarray(picture)
    red = np.all(rgb == np.asarray(TUMOUR_RGB, dtype=np.uint8), axis=2)
    boxes = []
    for third in np.array_split(np.arange(rgb.shape[1]), 3):
        ys, xs = np.nonzero(red[:, third])
        boxes.append((int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)) if xs.size else (0, 0))
    return boxes


def test_preview_shows_a_sphere_round_in_all_three_views_of_an_oblique_anisotropic_scan() -> None:
    scan, tumour, pancreas, centre = scan_with_sphere()
    measurements = Measurements(7.24, (Lesion(7.24, centre, 24.0, 24.0, 24.0, "20-40 mm"),), 9.1, 250.0, 250.0)
    picture = render_preview(scan, tumour, pancreas, measurements, Confidence(False, 1, reason="no mirroring (--fast)"),
                             "sphere", demonstration=True)
    assert picture.mode == "RGB" and picture.width >= 900
    for width, height in red_boxes(picture):
        assert width > 10 and height > 10, "the lesion is outlined in every view"
        assert abs(width - height) <= 0.2 * max(width, height), (width, height)  # round: physical pixels, patient axes
    widths = [w for w, _ in red_boxes(picture)]
    assert max(widths) - min(widths) <= 0.2 * max(widths)  # one scale in every view


def write_case(out: Path, name: str, review: bool | None, status: str = "ok", demonstration: bool = True) -> None:
    """A case as a run writes it: its input, mask, pancreas mask and statistics file."""
    scan, tumour, pancreas, centre = scan_with_sphere()
    inputs = out.parent / "inputs"
    inputs.mkdir(exist_ok=True)
    sitk.WriteImage(scan, str(inputs / f"{name}.mha"))
    outputs = {}
    if status == "ok":
        sitk.WriteImage(tumour, str(out / f"{name}.mha"))
        sitk.WriteImage(pancreas, str(out / f"{name}_pancreas.mha"))
        outputs = {"tumour": f"{name}.mha", "pancreas": f"{name}_pancreas.mha"}
    measured = Measurements(7.24, (Lesion(7.24, tuple(centre), 24.0, 23.5, 24.2, "20-40 mm"),), 9.1, 120.0, 118.0)
    confidence = (Confidence(True, 8, 0.6 if review else 0.95, 0.4 if review else 0.9, 6.0, 8.0, review,
                             "mean mirrored Dice below 0.9" if review else "")
                  if review is not None else Confidence(False, 1, reason="no mirroring (--fast)"))
    segmentation = Segmentation(tumour, measurements=measured, confidence=confidence) if status == "ok" else None
    paths = {kind: out / file for kind, file in outputs.items()}
    data = to_json_dict(name, inputs / f"{name}.mha", "done" if status == "ok" else status, {"demonstration": demonstration},
                        {}, segmentation, {"read": 0.5, "network": 3.0}, paths,
                        "" if status == "ok" else f"{inputs / name}.mha: spacing 0 mm")
    write_statistics_json(out / f"{name}_statistics.json", data)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    out.mkdir()
    write_case(out, "a_ok", review=False)
    write_case(out, "b_refused", review=None, status="refused")
    write_case(out, "c_review", review=True)
    write_case(out, "d fast#2", review=None)
    return out


def test_report_lists_cases_flagged_first_with_pages_thumbnails_and_the_demonstration_warning(run_folder: Path) -> None:
    assert report_cli.main([str(run_folder)]) == 0
    report = run_folder / "report"
    index = (report / "index.html").read_text()
    order = [index.index(f'data-case="{name}"') for name in ("c_review", "b_refused", "a_ok", "d fast#2")]
    assert order == sorted(order), "flagged for review first, then refused, then the rest"
    for page in [report / "index.html", *sorted((report / "cases").glob("*.html"))]:
        assert "DEMONSTRATION MODEL" in page.read_text(), page
    assert (report / "cases" / "a_ok_thumbnail.png").is_file() and (report / "cases" / "a_ok_preview.png").is_file()
    assert "spacing 0 mm" in index and "not computed" in index
    assert (report / "niivue.umd.js").is_file() and (report / "LICENSE.niivue").is_file()
    assert "http" not in (report / "cases" / "a_ok.html").read_text()  # nothing from the network
    assert not [p for p in run_folder.rglob("*") if p.name.startswith(".tmp_")]


def test_report_with_reference_adds_the_challenge_metrics(run_folder: Path, tmp_path: Path) -> None:
    reference = tmp_path / "ref"
    reference.mkdir()
    for name in ("a_ok", "c_review"):
        sitk.WriteImage(sitk.ReadImage(str(run_folder / f"{name}.mha")), str(reference / f"{name}.mha"))
    assert report_cli.main([str(run_folder), "--reference", str(reference)]) == 0
    index = (run_folder / "report" / "index.html").read_text()
    assert "surface Dice" in index and 'data-value="1.0"' in index  # the mask against itself: Dice 1
    assert "reference" in (run_folder / "report" / "cases" / "a_ok.html").read_text()


def test_report_of_a_cohort_from_its_manifest(tmp_path: Path) -> None:
    """A cohort's output folder without statistics files: the manifest gives status, error,
    tumour volume, time and the masks."""
    from panther_seg.cohort.manifest import MANIFEST_NAME, CaseRecord, join_checksums

    out = tmp_path / "cohort"
    out.mkdir()
    write_case(out, "case00", review=None)
    for name in out.glob("*_statistics.json"):
        name.unlink()
    records = [CaseRecord("case00.mha", str(tmp_path / "inputs" / "case00.mha"), "done",
                          outputs=join_checksums({"case00.mha": "0" * 64, "case00_pancreas.mha": "0" * 64}),
                          tumour_ml="7.240", wall_s="2.5"),
               CaseRecord("broken.mha", str(tmp_path / "inputs" / "broken.mha"), "refused",
                          error="broken.mha: cannot be read as an image")]
    with open(out / MANIFEST_NAME, "w", newline="") as f:
        writer = csv.DictWriter(f, CaseRecord.columns())
        writer.writeheader()
        writer.writerows(asdict(r) for r in records)
    assert report_cli.main([str(out)]) == 0
    index = (out / "report" / "index.html").read_text()
    assert index.index('data-case="broken"') < index.index('data-case="case00"')  # the refused case first
    assert "cannot be read as an image" in index and ">7.24<" in index
    assert (out / "report" / "cases" / "case00.js").is_file() and not (out / "report" / "cases" / "broken.js").exists()


def test_report_refuses_a_folder_without_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_cli.main([str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path}: no cases")
    bad = tmp_path / "x_statistics.json"
    bad.write_text("{}")
    with pytest.raises(Exception, match="is not a panther-seg-statistics file"):
        read_statistics(bad)
    assert not (tmp_path / "report").exists()


def test_preview_and_report_need_batch_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--report"]) == 2
    assert "error: --preview and --report go with -i/--input" in capsys.readouterr().err


@pytest.mark.slow
def test_batch_mode_writes_previews_and_the_report(tmp_path: Path, small_checkpoint: Path, monkeypatch) -> None:
    """As a user types it, with paths relative to the working folder: the statistics record where
    the scans are, so the pictures and the report's viewer find them."""
    from conftest import blob_volume, write_image

    for seed in (1, 2):
        write_image(tmp_path / "in" / f"case{seed}.mha", blob_volume((16, 48, 48), seed))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["-i", "in", "-o", "out", "--checkpoint", str(small_checkpoint), "--fast",
                     "--save-pancreas", "--preview", "--report"]) == 0
    for seed in (1, 2):
        with Image.open(out / f"case{seed}_preview.png") as picture:
            assert picture.format == "PNG" and picture.width >= 900
        assert (out / "report" / "cases" / f"case{seed}.js").is_file()  # the viewer's volumes
    index = (out / "report" / "index.html").read_text()
    assert 'data-case="case1"' in index and 'data-case="case2"' in index
    assert (out / "statistics.csv").is_file()  # --report implies --statistics: the table's figures


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        pytest.skip("needs Chromium (Debian's chromium package; CI installs it) for the browser test")
    pytest.importorskip("websocket", reason="needs websocket-client (requirements-dev.txt)")
    opened = Browser(executable)
    yield opened
    opened.close()


def test_report_in_a_real_browser_from_disk(run_folder: Path, browser: Browser) -> None:
    assert report_cli.main([str(run_folder)]) == 0
    browser.open(run_folder / "report" / "index.html")
    rows = browser.evaluate("Array.from(document.querySelectorAll('#cases tbody tr')).map(r => r.dataset.case)")
    assert rows == ["c_review", "b_refused", "a_ok", "d fast#2"]
    browser.evaluate("document.querySelectorAll('#cases th')[0].click()")  # sort by case name
    rows = browser.evaluate("Array.from(document.querySelectorAll('#cases tbody tr')).map(r => r.dataset.case)")
    assert rows == ["a_ok", "b_refused", "c_review", "d fast#2"]
    assert browser.evaluate("document.querySelectorAll('#cases img.thumb').length") == 3
    assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")

    browser.open(run_folder / "report" / "cases" / "a_ok.html", "document.body.dataset.viewer")
    assert browser.evaluate("document.body.dataset.viewer") == "ready"
    assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    pixels = browser.screenshot("#viewer").astype(int)
    scan = (pixels.max(axis=2) > 60) & (np.ptp(pixels, axis=2) < 20)  # grey scan over the black background
    tumour = (pixels[..., 0] > 150) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100)
    assert scan.mean() > 0.1, "the viewer drew the scan"
    assert tumour.any(), "and the tumour over it"
    assert browser.errors == []


def test_report_shows_a_dicom_series_input(tmp_path: Path) -> None:
    pytest.importorskip("highdicom", reason="DICOM support needs requirements-dicom.txt (pip install -e '.[dicom]')")
    from test_dicom import smoke_volume, write_mr_series

    from panther_seg.io.dicom import read_dicom_series
    from panther_seg.reporting.records import ReportCase
    from panther_seg.reporting.report import write_report

    write_mr_series(smoke_volume(), tmp_path / "series")
    scan = read_dicom_series(tmp_path / "series").image
    mask = sitk.Cast(scan > float(np.percentile(sitk.GetArrayViewFromImage(scan), 99)), sitk.sitkUInt8)
    out = tmp_path / "out"
    out.mkdir()
    sitk.WriteImage(mask, str(out / "series.mha"))
    write_report(out, [ReportCase("series", "ok", image=tmp_path / "series", tumour=out / "series.mha")])
    assert (out / "report" / "cases" / "series.js").is_file()
    assert 'id="viewer"' in (out / "report" / "cases" / "series.html").read_text()
