"""Reading, validating and writing images and outputs."""
