"""What a person reads: overlay pictures, the per-case preview, the browser report."""
