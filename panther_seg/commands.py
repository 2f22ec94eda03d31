"""The installed console commands. Each imports its module only when run, so a command whose
extra is not installed refuses in one line naming the extra instead of a traceback."""
from __future__ import annotations

import importlib
import sys
from typing import Callable

# extra: the top-level modules it brings (requirements-<extra>.txt)
EXTRAS = {
    "train": ("lightning", "tensorboard", "pandas", "yaml", "PIL"),
    "dicom": ("pydicom", "highdicom"),
    "cohort": ("ray",),
}


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The extra that provides the module ``error`` could not import, if any."""
    top = (error.name or "").split(".")[0]
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)


def _command(name: str, module: str) -> Callable[[list[str] | None], int]:
    def run(argv: list[str] | None = None) -> int:
        try:
            main = importlib.import_module(module).main
            return main(argv)
        except ModuleNotFoundError as e:
            extra = missing_extra(e)
            if extra is None:
                raise
            print(f"error: {name} needs the '{extra}' extra ({e.name} is not installed): "
                  f'pip install "panther-seg[{extra}]"', file=sys.stderr)
            return 1

    run.__name__ = name.replace("-", "_")
    run.__doc__ = f"The ``{name}`` command ({module})."
    return run


segment = _command("panther-seg", "panther_seg.cli")
train = _command("panther-seg-train", "panther_seg.training.run_all")
evaluate = _command("panther-seg-evaluate", "panther_seg.evaluation.cli")
benchmark = _command("panther-seg-benchmark", "panther_seg.tools.benchmark")
resources = _command("panther-seg-resources", "panther_seg.contract.resources")
cohort = _command("panther-seg-cohort", "panther_seg.cohort.cli")
report = _command("panther-seg-report", "panther_seg.evaluation.report_command")
