"""The time of a PACS round trip against the local route, for the real MRI in ../shared.

    python tests/pacs_roundtrip.py [--repeat N] [extra panther-seg options]

The real MRI is written as a single-frame DICOM series (``test_dicom.write_mr_series``) and
uploaded to a real Orthanc with its DICOMweb plugin (``tests/orthanc.py``, authentication on,
credentials from a netrc file). Each run is the whole command, as a user runs it, in a fresh
process: ``process.py -i <folder> -o seg.dcm`` (local route) and ``process.py -i <series URL>
-o <DICOMweb base URL>`` (fetch with WADO-RS, segment, store with STOW-RS), alternated, with
``--fast`` and the baked checkpoint (``resources/``). Prints the machine and both figures.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import orthanc  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from test_dicom import write_mr_series  # noqa: E402

REAL_MRI = ROOT.parent / "shared" / "data" / "real-mri" / "example_mr_sm.nii.gz"
STUDY = "1.2.826.0.1.3680043.8.498.1"  # write_mr_series's study
SERIES = "1.2.826.0.1.3680043.8.498.900"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, Python {platform.python_version()}"


STAGES = ("read", "write")  # where the routes differ: a folder read or a WADO-RS fetch; a file written or also stored


def timed(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall seconds of the whole command, its own 'total' (after the imports), and its read and
    write stages as it logs them."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "process.py")] + argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stderr}")
    figures = {"whole command": wall}
    for name, pattern in [("after imports", r"^total ([0-9.]+) s")] + [(s, rf"^  {s} +([0-9.]+) s") for s in STAGES]:
        found = re.search(pattern, done.stdout, re.MULTILINE)
        figures[name] = float(found.group(1)) if found else float("nan")
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    args, extra = p.parse_known_args()
    why = orthanc.unavailable()
    if why or not REAL_MRI.is_file():
        raise SystemExit(why or f"{REAL_MRI} is absent")
    with tempfile.TemporaryDirectory(prefix="pacs-roundtrip-") as tmp:
        folder = Path(tmp)
        series = folder / "series"
        files = write_mr_series(sitk.ReadImage(str(REAL_MRI)), series, SERIES)
        netrc = folder / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login {orthanc.USER} password {orthanc.PASSWORD}\n")
        netrc.chmod(0o600)
        env = dict(os.environ, NETRC=str(netrc))
        server_folder = folder / "orthanc"
        server_folder.mkdir()
        servers = orthanc.running(server_folder)
        server = next(servers)
        try:
            server.upload(files)
            url = f"{server.dicomweb}/studies/{STUDY}/series/{SERIES}"
            common = ["--fast"] + extra
            routes = {
                "local (folder -> seg.dcm)": ["-i", str(series), "-o", str(folder / "out" / "seg.dcm")] + common,
                "PACS (WADO-RS -> STOW-RS)": ["-i", url, "-o", server.dicomweb] + common,
            }
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in routes}
            for _ in range(args.repeat):
                for name, argv in routes.items():
                    runs[name].append(timed(argv, env))
            stored = server.instance_count() - len(files)
        finally:
            servers.close()
    print(f"machine: {machine()}")
    print(f"real MRI {REAL_MRI.name}: {len(files)} slices; Orthanc {orthanc.ORTHANC} on loopback; "
          f"options {' '.join(common)}; {args.repeat} runs per route, alternated; {stored} SEGs stored")
    for name, values in runs.items():
        print(f"{name}: medians " + "; ".join(
            f"{figure} {statistics.median(v[figure] for v in values):.2f} s ({', '.join(f'{v[figure]:.2f}' for v in values)})"
            for figure in values[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
