"""PANTHER Task 1 scoring: the challenge's metrics and overlay pictures of the cases."""
