"""What a checkpoint records of where it came from (the training's export writes it:
``training/export.py``), summarised for a run's results (``describe_model``, statistics.json) and
for the names every result gives its model (``model_provenance``, DICOM's algorithm
identification and the report), and whether it is a demonstration.

A checkpoint is a demonstration, not a model for real scans, when its provenance says so: an
explicit ``"demonstration": true``, else a note that calls it a demonstration or says it was
trained on synthetic data (as the baked ``resources/segformer3d.pt`` records).
"""
from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any, Sequence

from ..results import ModelProvenance

UNKNOWN = "unknown"
DEMONSTRATION_WORDS = ("demonstration", "synthetic")
RECORDED = ("note", "exported", "export_git_revision", "training_git_revision", "training_machine", "global_step",
            "epoch", "seed", "validation_metrics")
DATA = ("data", "split", "fold")
DEMONSTRATION_WARNING = ("WARNING: this checkpoint is a DEMONSTRATION trained on synthetic data (its provenance says so): "
                         "its masks and measurements mean nothing for real scans; use a model trained on real MRI (--checkpoint)")


def is_demonstration(provenance: dict[str, Any]) -> bool:
    flag = provenance.get("demonstration")
    if isinstance(flag, bool):
        return flag
    note = str(provenance.get("note", "")).lower()
    return any(word in note for word in DEMONSTRATION_WORDS)


def describe_model(path: Path, digest: str, kind: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """One checkpoint: its file and SHA-256, its format, and the recorded facts of its training
    (the training set's size and source, when it was exported, the code revisions); the full
    training configuration stays in the checkpoint."""
    data = provenance.get("data") if isinstance(provenance.get("data"), dict) else {}
    trained_on = {k: data[k] for k in DATA if k in data}
    for k in ("train_cases", "val_cases"):
        if isinstance(data.get(k), list):
            trained_on[k] = len(data[k])
    evaluation = provenance.get("evaluation") if isinstance(provenance.get("evaluation"), dict) else {}
    summary = evaluation.get("summary") if isinstance(evaluation.get("summary"), dict) else {}
    return {
        "file": Path(path).name,
        "sha256": digest,
        "format": kind,
        "demonstration": is_demonstration(provenance),
        **{k: provenance[k] for k in RECORDED if k in provenance},
        "trained_on": trained_on,
        "evaluation": {k: v for k, v in {"held_out_set": evaluation.get("held_out_set"), "n_cases": summary.get("n_cases"),
                                         "mean_dice": summary.get("mean_dice")}.items() if v is not None},
    }


def model_provenance(checkpoint_paths: Sequence[Path], record: dict[str, Any]) -> ModelProvenance:
    """A run's model: its checkpoint files and the first member's provenance ``record`` (an
    ensemble's members are exported together, from one training set and code)."""
    return ModelProvenance(
        checkpoints=tuple(PurePath(p).name for p in checkpoint_paths),
        trained_on=trained_on(record),
        trained_when=str(record.get("finished") or record.get("exported") or record.get("started") or UNKNOWN),
        code_revision=str(record.get("training_git_revision") or record.get("git_revision") or UNKNOWN),
        demonstration=is_demonstration(record),
        note=str(record.get("note") or ""),
    )


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
