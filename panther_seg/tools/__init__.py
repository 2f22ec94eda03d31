"""Measurements and oracles beside the pipeline: benchmark, departures, synthetic data, the literal protocol, the smoke check."""
