"""A user name for processes that run under a uid with no passwd entry.

``docker run --user 54321`` (and grand-challenge's runners) may pick a uid the image's
/etc/passwd does not list. ``getpass.getuser()`` then raises ``KeyError`` once it has found none
of LOGNAME, USER, LNAME and USERNAME in the environment, and MONAI calls it at import
(``monai/config/deviceconfig.py``), so the command line would die before reading anything.
``ENV USER=...`` in the Dockerfile does not cover a caller who replaces the environment
(``env -i``, a scheduler's clean environment), hence this fallback in the package itself.
"""
from __future__ import annotations

import os

NAME_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")


def ensure_user_name() -> None:
    """Set ``USER=uid<uid>`` when no name variable is set and the uid has no passwd entry;
    a real passwd entry or a name the caller chose is left alone."""
    if any(os.environ.get(name) for name in NAME_VARIABLES) or not hasattr(os, "getuid"):
        return
    import pwd

    try:
        pwd.getpwuid(os.getuid())
    except KeyError:
        os.environ["USER"] = f"uid{os.getuid()}"
