"""PANTHER Task 1 pancreatic tumour segmentation: the pipeline behind process.py."""
