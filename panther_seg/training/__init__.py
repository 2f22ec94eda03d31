"""Training that reproduces the baked weights: preprocess, train (Lightning + MONAI), export."""
