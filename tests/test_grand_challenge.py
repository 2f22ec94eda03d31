"""grand-challenge's inputs.json: the image socket chosen as the runner describes it, and every
malformed file refused in one error naming inputs.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import blob_volume, write_image
from panther_seg.errors import InputError
from panther_seg.io.grand_challenge import find_gc_input


def socket(slug: str, relative_path: str, kind: str = "Image", name: str = "scan.mha") -> dict:
    """One socket value as the algorithm template's inputs.json holds it."""
    return {
        "pk": 1, "file": None, "value": None,
        "image": {"pk": "3f2a9c1e-0000-0000-0000-000000000001", "name": name} if kind == "Image" else None,
        "interface": {"pk": 2, "title": slug, "slug": slug, "kind": kind, "super_kind": kind if kind == "Image" else "Value",
                      "description": "", "default_value": None, "look_up_table": None, "relative_path": relative_path},
    }


def job(root: Path, sockets: list[dict] | str, images: dict[str, str]) -> Path:
    for folder, name in images.items():
        write_image(root / folder / name, blob_volume((4, 8, 8)))
    root.mkdir(parents=True, exist_ok=True)
    (root / "inputs.json").write_text(sockets if isinstance(sockets, str) else json.dumps(sockets))
    return root


def test_the_abdominal_t1_mri_socket_is_chosen_among_others(tmp_path):
    root = job(tmp_path, [socket("clinical-information", "clinical-information.json", kind="Anything"),
                          socket("abdominal-t2-scan", "images/t2"), socket("abdominal-t1-mri", "images/portal-venous")],
               {"images/t2": "a.mha", "images/portal-venous": "b.mha"})
    (tmp_path / "clinical-information.json").write_text("{}")
    assert find_gc_input(root) == root / "images" / "portal-venous" / "b.mha"


def test_a_single_image_socket_is_used_whatever_its_name(tmp_path):
    root = job(tmp_path, [socket("arterial-phase", "images/arterial")], {"images/arterial": "c.mha"})
    assert find_gc_input(root) == root / "images" / "arterial" / "c.mha"


BAD = {
    "not JSON": ("[{", {}, "not valid JSON"),
    "not a list": ('{"interface": {}}', {}, "expected a JSON list of socket values"),
    "no interface": ([{"image": None}], {}, "has no 'interface' object"),
    "no image socket": ([socket("notes", "notes.json", kind="String")], {}, "no socket of kind Image"),
    "several, none PANTHER's": ([socket("t1", "images/t1"), socket("t2", "images/t2")],
                                {"images/t1": "a.mha", "images/t2": "b.mha"}, "2 Image sockets (t1, t2) and none is abdominal-t1-mri"),
    "missing folder": ([socket("abdominal-t1-mri", "images/abdominal-t1-mri")], {}, "does not exist"),
    "path outside": ([socket("abdominal-t1-mri", "../elsewhere")], {}, "is not a relative path inside the input folder"),
}


@pytest.mark.parametrize("name", BAD)
def test_a_malformed_inputs_json_is_one_error_naming_it(tmp_path, name):
    sockets, images, expected = BAD[name]
    root = job(tmp_path / "input", sockets, images)
    with pytest.raises(InputError) as caught:
        find_gc_input(root)
    assert caught.value.path == root / "inputs.json" and expected in caught.value.problem


def test_without_inputs_json_the_mri_folder_rule_stays(tmp_path):
    write_image(tmp_path / "images" / "t1-mri-arterial" / "x.mha", blob_volume((4, 8, 8)))
    assert find_gc_input(tmp_path) == tmp_path / "images" / "t1-mri-arterial" / "x.mha"


def test_the_command_line_follows_inputs_json(tmp_path, small_checkpoint, capsys):
    from panther_seg.cli import main

    root = job(tmp_path / "input", [socket("abdominal-t1-mri", "images/venous-phase")],
               {"images/venous-phase": "uuid.mha", "images/decoy-mri": "decoy.mha"})
    code = main(["--input-root", str(root), "--output-root", str(tmp_path / "output"), "--checkpoint", str(small_checkpoint), "--fast"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "input uuid.mha" in out
    assert (tmp_path / "output" / "images" / "pancreatic-tumor-segmentation" / "tumor_seg.mha").is_file()
    (root / "inputs.json").write_text("[]")
    code = main(["--input-root", str(root), "--output-root", str(tmp_path / "output2"), "--checkpoint", str(small_checkpoint), "--fast"])
    err = capsys.readouterr().err
    assert code == 1 and err.strip() == f"error: {root / 'inputs.json'}: no socket of kind Image"
