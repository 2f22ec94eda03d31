"""Which model a run uses, in the words every result names it by: the checkpoint's recorded
provenance (``training.export`` writes it into the resource format) summed up as a
``ModelProvenance``. A checkpoint that records none (a bare state dict, the original Lightning
file) says "unknown" rather than guessing; a demonstration checkpoint (its provenance says
``"demonstration": true``, or its note starts "DEMONSTRATION") is named one."""
from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from ..results import ModelProvenance

if TYPE_CHECKING:
    from .resources import Resources

UNKNOWN = "unknown"
DEMONSTRATION_MARK = "DEMONSTRATION"


def model_provenance(resources: Resources) -> ModelProvenance:
    """The run's model: its checkpoint files and the first member's provenance (an ensemble's
    members are exported together, from one training set and code)."""
    record = resources.members[0].provenance
    return ModelProvenance(
        checkpoints=tuple(PurePath(p).name for p in resources.checkpoint_paths),
        trained_on=trained_on(record),
        trained_when=str(record.get("finished") or record.get("exported") or record.get("started") or UNKNOWN),
        code_revision=str(record.get("training_git_revision") or record.get("git_revision") or UNKNOWN),
        demonstration=is_demonstration(record),
        note=str(record.get("note") or ""),
    )


def is_demonstration(record: dict[str, Any]) -> bool:
    return record.get("demonstration") is True or str(record.get("note") or "").lstrip().upper().startswith(DEMONSTRATION_MARK)


def trained_on(record: dict[str, Any]) -> str:
    """'fold 0 of splits_final.json: 19 training cases, 5 validation cases' (file names only:
    the training machine's folders mean nothing to a reader)."""
    data = record.get("data")
    if not isinstance(data, dict) or not data:
        return UNKNOWN
    where = ""
    if "fold" in data:
        where = f"fold {data['fold']}" + (f" of {PurePath(str(data['split'])).name}" if data.get("split") else "")
    counts = ", ".join(f"{len(data[k])} {what} cases" for k, what in (("train_cases", "training"), ("val_cases", "validation"))
                       if isinstance(data.get(k), list))
    return ": ".join(part for part in (where, counts) if part) or UNKNOWN
