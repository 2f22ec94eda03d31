"""Cohorts beyond one machine: batch-mode inference on a Ray cluster, exactly once and resumable.

``panther-seg-cohort INPUTS... -o OUT`` writes what ``panther-seg -i INPUTS... -o OUT`` writes,
with the same options, and ``OUT/manifest.csv``: one row per case, kept by the driver alone, from
which a rerun (or a restarted driver) skips the cases whose outputs still verify. Ray is an
optional dependency (``pip install "panther-seg[cohort]"``); nothing here imports it at module
level except ``panther_seg.cohort.workers``.
"""
