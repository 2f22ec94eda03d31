"""A uid with no passwd entry (``docker run --user 54321``): the command line still runs."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, blob_volume, write_image
from panther_seg.system.identity import ensure_user_name

UNLISTED_UID = 54321


def test_a_name_is_set_only_for_an_unlisted_uid(monkeypatch):
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "getuid", lambda: UNLISTED_UID)
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    ensure_user_name()
    assert os.environ["USER"] == f"uid{UNLISTED_UID}"
    monkeypatch.setenv("USER", "chosen")
    ensure_user_name()
    assert os.environ["USER"] == "chosen"


def usable_by_others(path: Path) -> bool:
    """Readable and searchable by any user, every folder above it too (an interpreter under
    /root, as pyenv installs it, is not)."""
    path = path.resolve()
    return all(p.stat().st_mode & 0o005 == 0o005 for p in [path, *path.parents])


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="switching to another uid needs root")
def test_the_command_line_runs_as_a_uid_without_a_passwd_entry(small_checkpoint):
    unusable = [p for p in (Path(sys.executable), Path(sys.base_prefix), Path(ROOT)) if not usable_by_others(p)]
    if unusable:
        pytest.skip(f"another uid cannot use {unusable[0].resolve()} here (a folder above it is private)")
    try:
        pwd.getpwuid(UNLISTED_UID)
        pytest.skip(f"uid {UNLISTED_UID} has a passwd entry here")
    except KeyError:
        pass
    # pytest's tmp_path is root's 0700 tree: the child works in a world-writable folder of its own
    work = Path(tempfile.mkdtemp(prefix="panther-uid-"))
    try:
        os.chmod(work, 0o777)
        write_image(work / "case.mha", blob_volume((12, 32, 40)))
        shutil.copy(small_checkpoint, work / "small.pt")
        (work / "home").mkdir(mode=0o777)
        for path in (work / "case.mha", work / "small.pt"):
            os.chmod(path, 0o644)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work / "home"), "PYTHONPATH": str(ROOT),
               "OMP_NUM_THREADS": "1"}
        child = subprocess.run(
            [sys.executable, "-c", "from panther_seg.cli import main; raise SystemExit(main())", "-i", str(work / "case.mha"),
             "-o", str(work / "out" / "mask.mha"), "--checkpoint", str(work / "small.pt"), "--fast"],
            env=env, cwd=work, capture_output=True, text=True, timeout=300,
            preexec_fn=lambda: (os.setgid(UNLISTED_UID), os.setuid(UNLISTED_UID)),
        )
        written = (work / "out" / "mask.mha").is_file() and (work / "out" / "mask.mha").stat().st_uid
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert child.returncode == 0, child.stderr
    assert written == UNLISTED_UID


def test_monai_imports_in_a_child_whose_uid_has_no_passwd_entry():
    """Any user: the lookup that fails for an unlisted uid is simulated, so this runs everywhere."""
    script = ("import pwd\n"
              "def unlisted(uid): raise KeyError(f'getpwuid(): uid not found: {uid}')\n"
              "pwd.getpwuid = unlisted\n"
              "import panther_seg.cli, monai, getpass\n"
              "print(getpass.getuser())\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "HOME": os.environ.get("HOME", "/tmp")}
    child = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == f"uid{os.getuid()}"
