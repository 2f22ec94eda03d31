"""What a person reads beyond the masks: measurements (``measurements``, pure, used by the
pipeline), their serialisation to statistics.json and statistics.csv (``statistics``), overlay
pictures, the per-case preview and the browser report."""
