"""grand-challenge entry point: ``python process.py`` reads /input and writes /output.

See ``python process.py --help`` for the local and batch modes; the pipeline is in panther_seg/.
"""
from panther_seg.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
