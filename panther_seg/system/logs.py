"""The package's log as every command shows it: progress to stdout, warnings and errors to stderr
(grand-challenge shows stderr as warnings), the message alone on each line."""
from __future__ import annotations

import logging
import sys

log = logging.getLogger("panther_seg")


def configure_logging() -> None:
    """Progress to stdout; warnings and errors to stderr (grand-challenge shows them as warnings)."""
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda r: r.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for h in (out, err):
        h.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(h)
