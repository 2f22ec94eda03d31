"""What a case's results say beyond its masks: measurements (``measurements``, pure, used by the
pipeline) and their serialisation to statistics.json and statistics.csv (``statistics``, used by
batch mode and the cohort)."""
