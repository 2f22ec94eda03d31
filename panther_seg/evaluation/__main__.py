"""``python -m panther_seg.evaluation PRED_DIR REF_DIR``: see panther_seg/evaluation/cli.py."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
