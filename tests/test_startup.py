"""Start-up paid once per case: ``--help`` and argument errors answer before the heavy imports,
``import panther_seg`` loads its public names on first use, a case never imports MONAI, and the
checkpoint's checks do not repeat work. Each test looks at what a fresh process imported (its
``sys.modules``), not at a clock, so it holds on a busy machine."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, SMALL_CONFIG, blob_volume, write_image

HEAVY = ("torch", "monai", "scipy", "SimpleITK", "pydicom", "highdicom")

# runs ``code`` in a fresh interpreter, then prints the exit code and the heavy top-level modules it imported
CHILD = """import json, sys
code = 0
try:
{code}
except SystemExit as e:
    code = e.code
print(json.dumps({{"exit": code, "heavy": sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))}}))"""


def fresh(code: str) -> tuple[dict, str, str]:
    """The child's exit code and heavy imports, its output before that line, and its stderr."""
    body = "\n".join("    " + line for line in code.splitlines())
    done = subprocess.run([sys.executable, "-c", CHILD.format(code=body, heavy=HEAVY)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    *out, last = done.stdout.rstrip("\n").split("\n")
    return json.loads(last), "\n".join(out), done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["-h"]])
def test_help_answers_without_torch_monai_scipy_or_simpleitk(argv):
    result, out, _ = fresh(f"from panther_seg.commands import segment\nsegment({argv!r})")
    assert result == {"exit": 0, "heavy": []}
    assert "--fast" in out and "--checkpoint" in out


@pytest.mark.parametrize("argv, message", [
    (["--overlap", "2"], "--overlap must be in [0, 1)"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["-i", "scan.mha"], "-i/--input needs -o/--output"),
    (["--no-such-option"], "unrecognized arguments"),
])
def test_argument_errors_exit_2_before_the_heavy_imports(argv, message):
    result, _, err = fresh(f"from panther_seg.commands import segment\nsegment({argv!r})")
    assert result == {"exit": 2, "heavy": []}
    assert message in err


def test_process_py_help_answers_without_the_heavy_imports():
    result, out, _ = fresh("import runpy, sys\nsys.argv = ['process.py', '--help']\nrunpy.run_path('process.py', run_name='__main__')")
    assert result == {"exit": 0, "heavy": []} and "usage: process.py" in out


def test_the_package_loads_its_public_names_on_first_use():
    result, out, _ = fresh(
        "import panther_seg, sys\n"
        "print(sorted(panther_seg.__all__), 'torch' in sys.modules, 'Segmenter' in dir(panther_seg))\n"
        "from panther_seg.inference.pipeline import Segmenter\n"
        "from panther_seg.results import Extras\n"
        "print(panther_seg.Segmenter is Segmenter, panther_seg.Extras is Extras, callable(panther_seg.segment))\n"
        "try:\n    panther_seg.no_such_name\nexcept AttributeError as e:\n    print('AttributeError', e)"
    )
    names, loaded, missing = out.splitlines()
    assert names == "['Extras', 'InputError', 'Options', 'Segmentation', 'Segmenter', 'segment'] False True"
    assert loaded == "True True True"
    assert missing == "AttributeError module 'panther_seg' has no attribute 'no_such_name'"
    assert result["heavy"] and "monai" not in result["heavy"]  # Segmenter brought torch, and only that kind


def test_a_case_runs_without_importing_monai_or_the_dicom_stack(tmp_path, small_checkpoint):
    """An .mha case loads neither MONAI nor pydicom (telling DICOM inputs apart reads bytes only)."""
    image = tmp_path / "case.mha"
    write_image(image, blob_volume((16, 40, 48)))
    argv = ["-i", str(image), "-o", str(tmp_path / "mask.mha"), "--checkpoint", str(small_checkpoint), "--fast", "--device", "cpu"]
    result, out, err = fresh(f"from panther_seg.commands import segment\nsys.exit(segment({argv!r}))")
    assert result["exit"] == 0, err
    assert (tmp_path / "mask.mha").is_file() and "network" in out
    assert "torch" in result["heavy"] and not {"monai", "pydicom", "highdicom"} & set(result["heavy"])


def test_the_meta_network_is_built_once_per_configuration_and_the_default_one_is_known():
    from panther_seg.contract.network_config import is_default_network, meta_network

    small = meta_network(SMALL_CONFIG)
    assert meta_network({k: list(v) if isinstance(v, tuple) else v for k, v in SMALL_CONFIG.items()}) is small
    assert next(small.parameters()).device.type == "meta"
    assert is_default_network({}) and is_default_network({"embed_dims": [32, 64, 160, 256], "use_hybrid_stem": True})
    assert not is_default_network(SMALL_CONFIG) and not is_default_network({"num_classes": 2})


def test_the_cohort_commands_help_answers_without_torch():
    pytest.importorskip("ray", reason="the cohort extra")
    result, out, _ = fresh("from panther_seg.commands import cohort\ncohort(['--help'])")
    assert result["exit"] == 0 and "usage:" in out
    assert not {"torch", "monai"} & set(result["heavy"])
