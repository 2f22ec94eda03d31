"""Segmentation straight from a PACS, against a real Orthanc with its DICOMweb plugin
(``tests/orthanc.py``): a series uploaded, segmented by URL, its SEG stored back with STOW-RS and
read back from the server equal, voxel for voxel and in geometry, to the local folder route's
SEG; bad servers, credentials, UIDs and series refused in one line with nothing stored."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("pydicom", reason="DICOM support needs requirements-dicom.txt (pip install -e '.[dicom]')")
hd = pytest.importorskip("highdicom", reason="DICOM support needs requirements-dicom.txt (pip install -e '.[dicom]')")
pytest.importorskip("dicomweb_client", reason="DICOMweb needs requirements-dicom.txt (pip install -e '.[dicom]')")

import orthanc  # noqa: E402
from test_cli_dicom import files_under, one_error_line, run  # noqa: E402
from test_dicom import smoke_volume, write_mr_series  # noqa: E402
from panther_seg import batch  # noqa: E402
from panther_seg.cohort.cli import expand_inputs  # noqa: E402
from panther_seg.config import DICOMWEB_PASSWORD_ENV  # noqa: E402
from panther_seg.errors import InputError  # noqa: E402
from panther_seg.io.dicom import read_dicom_series  # noqa: E402
from panther_seg.io.dicom_seg import read_dicom_seg_masks  # noqa: E402

STUDY = "1.2.826.0.1.3680043.8.498.1"  # test_dicom.write_mr_series's study


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    why = orthanc.unavailable()
    if why:
        pytest.skip(why)
    yield from orthanc.running(tmp_path_factory.mktemp("orthanc"))


REAL_HOME = os.path.expanduser("~")


@pytest.fixture
def pacs(server, tmp_path, monkeypatch):
    """The server, emptied, with the test user's credentials in a netrc file (``$NETRC``) and
    no password in the environment."""
    server.clear()
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {orthanc.USER} password {orthanc.PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(DICOMWEB_PASSWORD_ENV, raising=False)
    return server


def series_url(server: orthanc.Orthanc, series_uid: str) -> str:
    return f"{server.dicomweb}/studies/{STUDY}/series/{series_uid}"


def stored_segs(server: orthanc.Orthanc, folder: Path) -> list[Path]:
    """Every SEG on the server, downloaded through Orthanc's REST API (not the code under test)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for series in server.json("/series?expand"):
        if series["MainDicomTags"].get("Modality") == "SEG":
            for instance in series["Instances"]:
                path = folder / f"{instance}.dcm"
                path.write_bytes(server.request(f"/instances/{instance}/file"))
                paths.append(path)
    return paths


def frame_geometry(path: Path) -> tuple:
    """What places a SEG's frames in space: positions, orientation, pixel measures, and the
    source instances each frame references."""
    seg = hd.seg.segread(str(path))
    shared = seg.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    frames = [(tuple(float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient),
               f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID,
               int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber))
              for f in seg.PerFrameFunctionalGroupsSequence]
    return (tuple(float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient),
            tuple(float(v) for v in measures.PixelSpacing), float(measures.SliceThickness), seg.Rows, seg.Columns,
            sorted(frames), seg.ReferencedSeriesSequence[0].SeriesInstanceUID)


def local_route(pacs: orthanc.Orthanc, tmp_path: Path, series_uid: str, checkpoint: Path, capsys) -> tuple[list[Path], Path, list[str]]:
    """A series written, uploaded, and segmented from its folder: the files, the reference SEG, the options."""
    files = write_mr_series(smoke_volume(), tmp_path / "series", series_uid)
    pacs.upload(files)
    common = ["--save-pancreas", "--checkpoint", checkpoint, "--fast"]
    code, _, err = run(["-i", tmp_path / "series", "-o", tmp_path / "local" / "seg.dcm"] + common, capsys)
    assert code == 0, err
    return files, tmp_path / "local" / "seg.dcm", common


def test_a_series_segmented_by_url_stores_the_same_seg_as_the_local_route(pacs, tmp_path, small_checkpoint, capsys):
    files, local, common = local_route(pacs, tmp_path, "1.2.826.0.1.3680043.8.498.10", small_checkpoint, capsys)
    reference = read_dicom_series(tmp_path / "series").image
    local_masks = read_dicom_seg_masks(local, reference)
    assert local_masks["tumour"].any() and local_masks["pancreas"].any()  # a real comparison, not empty masks
    code, out, err = run(["-i", series_url(pacs, "1.2.826.0.1.3680043.8.498.10"), "-o", pacs.dicomweb] + common, capsys)  # credentials from $NETRC
    assert code == 0, err
    assert f"stored on {pacs.dicomweb}" in out
    assert pacs.instance_count() == len(files) + 2  # the SEG and the SR beside it
    [stored] = stored_segs(pacs, tmp_path / "from-server")
    stored_masks = read_dicom_seg_masks(stored, reference)
    for name in ("tumour", "pancreas"):
        assert np.array_equal(stored_masks[name], local_masks[name])
    assert np.array_equal(hd.seg.segread(str(stored)).pixel_array, hd.seg.segread(str(local)).pixel_array)
    assert frame_geometry(stored) == frame_geometry(local)
    assert orthanc.PASSWORD not in out + err


def test_a_url_to_a_local_folder_with_the_user_named(pacs, tmp_path, small_checkpoint, capsys, monkeypatch):
    files, local, common = local_route(pacs, tmp_path, "1.2.826.0.1.3680043.8.498.11", small_checkpoint, capsys)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv(DICOMWEB_PASSWORD_ENV, orthanc.PASSWORD)
    code, out, err = run(["-i", series_url(pacs, "1.2.826.0.1.3680043.8.498.11"), "-o", tmp_path / "out",
                          "--dicomweb-user", orthanc.USER, "--output-format", "dicom-seg"] + common, capsys)
    assert code == 0, err
    named = tmp_path / "out" / "1.2.826.0.1.3680043.8.498.11.dcm"  # the case is named by its SeriesInstanceUID
    assert files_under(tmp_path / "out") == [named, named.with_name(named.stem + "_sr.dcm")]  # the SEG and its SR
    assert np.array_equal(hd.seg.segread(str(named)).pixel_array, hd.seg.segread(str(local)).pixel_array)
    assert frame_geometry(named) == frame_geometry(local)
    assert orthanc.PASSWORD not in out + err
    assert pacs.instance_count() == len(files)  # nothing stored by a run to a folder


def test_a_study_url_gives_its_one_mr_series_else_a_list(pacs, tmp_path):
    pacs.upload(write_mr_series(smoke_volume(), tmp_path / "mr", "1.2.826.0.1.3680043.8.498.21"))
    pacs.upload(write_mr_series(smoke_volume(), tmp_path / "ct", "1.2.826.0.1.3680043.8.498.22", modality="CT", prefix="CT"))
    study = f"{pacs.dicomweb}/studies/{STUDY}"
    [case] = batch.batch_inputs([study])
    assert (case.series_uid, case.name, str(case)) == ("1.2.826.0.1.3680043.8.498.21", "1.2.826.0.1.3680043.8.498.21", study)
    pacs.upload(write_mr_series(smoke_volume(), tmp_path / "mr2", "1.2.826.0.1.3680043.8.498.23", description="t1 late", prefix="B"))
    with pytest.raises(InputError) as refused:
        batch.batch_inputs([study + "/"])
    problem = refused.value.problem
    assert problem.startswith("2 MR series in the study") and "--series-uid" in problem
    assert all(uid in problem for uid in ("498.21 (MR", "498.22 (CT", "498.23 (MR, 't1 late'"))
    [case] = batch.batch_inputs([study], "1.2.826.0.1.3680043.8.498.23")
    assert case.series_uid == "1.2.826.0.1.3680043.8.498.23"
    series = batch.read_case(case, None)[1]
    assert series.uid == "1.2.826.0.1.3680043.8.498.23" and len(series.files) == 12


def test_a_cohort_csv_lists_series_urls(pacs, tmp_path):
    pacs.upload(write_mr_series(smoke_volume(), tmp_path / "mr", "1.2.826.0.1.3680043.8.498.31"))
    sitk.WriteImage(smoke_volume(), str(tmp_path / "scan.mha"))
    url = series_url(pacs, "1.2.826.0.1.3680043.8.498.31")
    (tmp_path / "cases.csv").write_text(f"input\n{url}\nscan.mha\n")
    inputs = expand_inputs([tmp_path / "cases.csv"])
    assert inputs == [url, tmp_path / "scan.mha"]
    cases = batch.batch_inputs(inputs)
    destinations = batch.batch_destinations(cases, tmp_path / "out", batch.Extras())
    assert [d.tumour.name for d in destinations] == ["1.2.826.0.1.3680043.8.498.31.mha", "scan.mha"]


BAD_NETRC = f"machine 127.0.0.1 login {orthanc.USER} password wrong-{orthanc.PASSWORD}\n"


@pytest.mark.parametrize("fault, expected", [
    ("unreachable", "cannot reach the DICOMweb server"),
    ("wrong uid", "no series 1.2.3.4.5 in study"),
    ("401", "the server refused the credentials (HTTP 401)"),
    ("not MR", "series 1.2.826.0.1.3680043.8.498.42 is CT, not MR"),
    ("no password", f"--dicomweb-user needs the password in ${DICOMWEB_PASSWORD_ENV}"),
    ("401 on the output", "the server refused the credentials (HTTP 401)"),
])
def test_bad_servers_credentials_and_series_are_refused_in_one_line_with_nothing_stored(
        pacs, tmp_path, small_checkpoint, capsys, monkeypatch, fault, expected):
    pacs.upload(write_mr_series(smoke_volume(), tmp_path / "mr", "1.2.826.0.1.3680043.8.498.41"))
    pacs.upload(write_mr_series(smoke_volume(), tmp_path / "ct", "1.2.826.0.1.3680043.8.498.42", modality="CT", prefix="CT"))
    before = pacs.instance_count()
    source, output, extra = series_url(pacs, "1.2.826.0.1.3680043.8.498.41"), pacs.dicomweb, []
    if fault == "unreachable":
        source = f"http://127.0.0.1:{orthanc.free_port()}/dicom-web/studies/{STUDY}/series/1.2.826.0.1.3680043.8.498.41"
    elif fault == "wrong uid":
        source = series_url(pacs, "1.2.3.4.5")
    elif fault == "401":
        (tmp_path / "netrc").write_text(BAD_NETRC)
    elif fault == "not MR":
        source = series_url(pacs, "1.2.826.0.1.3680043.8.498.42")
    elif fault == "no password":
        extra = ["--dicomweb-user", orthanc.USER]
    elif fault == "401 on the output":
        source = tmp_path / "mr"
        output = pacs.dicomweb.replace("127.0.0.1", "localhost")  # another host: no netrc entry
    code, out, err = run(["-i", source, "-o", output, "--checkpoint", small_checkpoint, "--fast"] + extra, capsys)
    line = one_error_line(err)
    assert code == 1 and expected in line, line
    assert line.startswith(f"error: {output if fault == '401 on the output' else source}: ")
    assert pacs.instance_count() == before
    assert orthanc.PASSWORD not in out + err


def test_a_failed_write_stores_nothing(pacs, tmp_path, small_checkpoint, capsys, monkeypatch):
    pacs.upload(write_mr_series(smoke_volume(), tmp_path / "mr", "1.2.826.0.1.3680043.8.498.51"))
    before = pacs.instance_count()

    def fail(*args, **kwargs):
        raise ValueError("encoding failed")

    monkeypatch.setattr("panther_seg.io.dicom_seg.write_dicom_seg", fail)
    code, _, err = run(["-i", series_url(pacs, "1.2.826.0.1.3680043.8.498.51"), "-o", pacs.dicomweb,
                        "--checkpoint", small_checkpoint, "--fast"], capsys)
    assert code == 1 and "cannot write the DICOM SEG: encoding failed" in one_error_line(err)
    assert pacs.instance_count() == before


def test_credentials_in_a_url_are_refused_without_showing_them(tmp_path, small_checkpoint, capsys):
    url = f"http://{orthanc.USER}:{orthanc.PASSWORD}@127.0.0.1:9/dicom-web/studies/1.2/series/1.3"
    code, out, err = run(["-i", url, "-o", tmp_path / "out", "--checkpoint", small_checkpoint], capsys)
    line = one_error_line(err)
    assert code == 1 and "credentials in a URL end up in logs" in line
    assert orthanc.PASSWORD not in out + err and orthanc.USER not in out + err
    assert files_under(tmp_path / "out") == []


@pytest.mark.slow
def test_the_cohort_segments_series_urls_from_a_csv(pacs, tmp_path, small_checkpoint, capsys, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cohort]' or '.[dev]')")
    from conftest import ROOT
    from panther_seg.cohort.cli import parse_args, run_cohort
    from panther_seg.cohort.manifest import MANIFEST_NAME

    pacs.upload(write_mr_series(smoke_volume(), tmp_path / "mr", "1.2.826.0.1.3680043.8.498.61"))
    url = series_url(pacs, "1.2.826.0.1.3680043.8.498.61")
    (tmp_path / "cases.csv").write_text(f"series\n{url}\n")
    options = ["--checkpoint", str(small_checkpoint), "--fast"]
    code, _, err = run(["-i", tmp_path / "mr", "-o", tmp_path / "local.mha"] + options, capsys)
    assert code == 0, err
    # Ray's own files (its cluster token under ~/.ray) where an earlier Ray in this process put them:
    # the pacs fixture's temporary HOME only hides a real ~/.netrc, which $NETRC already overrides.
    monkeypatch.setenv("HOME", REAL_HOME)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,  # workers find the credentials as the driver does
             runtime_env={"env_vars": {"NETRC": os.environ["NETRC"], "PYTHONPATH": str(ROOT)}})
    try:
        own, args = parse_args([str(tmp_path / "cases.csv"), "-o", str(tmp_path / "cohort")] + options)
        summary = run_cohort(own.inputs, own.output, args, workers=1)
    finally:
        ray.shutdown()
    assert summary.ok and summary.counts["done"] == 1
    assert summary.rows[0].input == url
    written = sitk.ReadImage(str(tmp_path / "cohort" / "1.2.826.0.1.3680043.8.498.61.mha"))
    local = sitk.ReadImage(str(tmp_path / "local.mha"))
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(local))
    assert written.GetOrigin() == local.GetOrigin() and written.GetSpacing() == local.GetSpacing()
    assert (tmp_path / "cohort" / MANIFEST_NAME).is_file()


def test_what_is_written_beside_the_seg_is_stored_with_it(pacs, tmp_path):
    """An SR written beside the SEG (``<case>_sr.dcm``) goes to the server in the same STOW-RS
    request; the hidden temporaries of an atomic write do not."""
    from panther_seg.io.dicomweb import StoredSeg, check_store

    first, second = write_mr_series(smoke_volume(), tmp_path / "mr", "1.2.826.0.1.3680043.8.498.71")[:2]

    def write(paths):
        assert paths.tumour.name == "case.dcm" and paths.pancreas_segment
        shutil.copy(first, paths.tumour)
        shutil.copy(second, paths.tumour.with_name("case_sr.dcm"))
        (paths.tumour.parent / ".tmp_x_case.dcm").write_bytes(b"half a file")

    written = StoredSeg(check_store(pacs.dicomweb), "case", pancreas_segment=True).store(write)
    assert written == f"case.dcm, case_sr.dcm stored on {pacs.dicomweb}"
    assert pacs.instance_count() == 2
