"""The grand-challenge layout, in one place: where the job's image is and where outputs go.

Input: when ``INPUT_ROOT/inputs.json`` exists (grand-challenge writes it for every job), the
image is the socket of kind Image whose slug is PANTHER's input, ``abdominal-t1-mri``, or else
the job's single Image socket, read from ``INPUT_ROOT/<its relative_path>``. Without the file
(older runners, hand-made test folders): the one folder under ``images/`` whose name contains
'mri', falling back to ``images/abdominal-t1-mri``. Outputs: the interfaces' paths below.

inputs.json is a list of socket values as the runner writes them, e.g.::

    [{"pk": 1, "file": null, "value": null,
      "image": {"pk": "3f2a...", "name": "scan.mha"},
      "interface": {"slug": "abdominal-t1-mri", "kind": "Image", "super_kind": "Image",
                    "relative_path": "images/abdominal-t1-mri", ...}}]
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import GC_INPUT_ROOT, GC_OUTPUT_NAME, GC_OUTPUT_ROOT, GC_OUTPUT_SUBDIR
from ..errors import InputError
from ..results import Extras
from .images import has_image_suffix, list_folder
from .outputs import OutputPaths, output_paths

GC_INPUTS_JSON = "inputs.json"
GC_IMAGES_SUBDIR = "images"
GC_INPUT_SLUG = "abdominal-t1-mri"
GC_INPUT_FALLBACK = GC_INPUT_SLUG  # the folder looked for when no folder name contains 'mri'
# each output kind's interface (the optional ones with --save-pancreas, --save-probabilities)
GC_OUTPUTS = {
    "tumour": f"{GC_OUTPUT_SUBDIR}/{GC_OUTPUT_NAME}",
    "pancreas": "images/pancreas-segmentation/pancreas_seg.mha",
    "tumour_probability": "images/pancreatic-tumor-probability/tumor_probability.mha",
    "pancreas_probability": "images/pancreas-probability/pancreas_probability.mha",
}


def find_gc_input(input_root: Path) -> Path:
    """The single image file of a grand-challenge job (inputs.json's socket when the file exists)."""
    input_root = Path(input_root)
    if not input_root.is_dir():
        raise InputError(input_root, "input folder does not exist")
    inputs_json = input_root / GC_INPUTS_JSON
    if inputs_json.exists():
        folder = input_root / image_socket_path(inputs_json)
        if not folder.is_dir():
            raise InputError(inputs_json, f"the image socket's folder {folder} does not exist")
    else:
        folder = _folder_by_name(input_root)
    return _single_image(folder)


def image_socket_path(inputs_json: Path) -> str:
    """The relative_path of the job's MRI socket in inputs.json; any malformation is one error naming it."""
    try:
        sockets = json.loads(inputs_json.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(inputs_json, f"cannot read: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(inputs_json, f"not valid JSON: {e}") from None
    if not isinstance(sockets, list) or not all(isinstance(s, dict) for s in sockets):
        raise InputError(inputs_json, "expected a JSON list of socket values (objects with an 'interface')")
    images = [i for i in (_interface(s, inputs_json) for s in sockets) if str(i.get("kind", "")).lower() == "image"]
    if not images:
        raise InputError(inputs_json, "no socket of kind Image")
    chosen = [i for i in images if i.get("slug") == GC_INPUT_SLUG]
    if not chosen:
        if len(images) > 1:
            slugs = ", ".join(str(i.get("slug")) for i in images)
            raise InputError(inputs_json, f"{len(images)} Image sockets ({slugs}) and none is {GC_INPUT_SLUG}")
        chosen = images
    if len(chosen) > 1:
        raise InputError(inputs_json, f"{len(chosen)} sockets with the slug {GC_INPUT_SLUG}")
    relative = chosen[0].get("relative_path")
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise InputError(inputs_json, f"socket {chosen[0].get('slug')}: relative_path {relative!r} is not a relative path "
                                      "inside the input folder")
    return relative


def _interface(socket: dict[str, Any], inputs_json: Path) -> dict[str, Any]:
    interface = socket.get("interface")
    if not isinstance(interface, dict):
        raise InputError(inputs_json, "a socket value has no 'interface' object")
    return interface


def _folder_by_name(input_root: Path) -> Path:
    images = input_root / GC_IMAGES_SUBDIR
    if not images.is_dir():
        raise InputError(images, "no images/ folder in the input")
    mri_dirs = sorted(p for p in list_folder(images) if p.is_dir() and "mri" in p.name.lower())
    if len(mri_dirs) > 1:
        names = ", ".join(p.name for p in mri_dirs)
        raise InputError(images, f"several MRI folders ({names}); expected exactly one")
    folder = mri_dirs[0] if mri_dirs else images / GC_INPUT_FALLBACK
    if not folder.is_dir():
        raise InputError(images, f"no folder whose name contains 'mri' (nor {GC_INPUT_FALLBACK})")
    return folder


def _single_image(folder: Path) -> Path:
    files = sorted(p for p in list_folder(folder) if p.is_file() and has_image_suffix(p))
    if not files:
        raise InputError(folder, "no image file (.mha, .nii, .nii.gz, .nrrd) in the input folder")
    if len(files) > 1:
        raise InputError(folder, f"{len(files)} image files; grand-challenge mode expects exactly one")
    return files[0]


def gc_outputs(output_root: Path, extras: Extras = Extras()) -> OutputPaths:
    """The tumour mask's interface path and, when asked, the optional outputs' interface paths."""
    return output_paths(extras, lambda name: output_root / GC_OUTPUTS[name])
