"""The model's contract and its formats: checkpoints, the resources a run uses, normalisation statistics."""
