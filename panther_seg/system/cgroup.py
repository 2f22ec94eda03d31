"""The memory this process may use: its cgroup's limit, else the machine's RAM.

grand-challenge (like Docker, Kubernetes, SLURM and systemd) caps a container's memory with a
cgroup and kills the process without a message when it goes over, whatever RAM the host has.
The limit that applies is the smallest on the way from the process's own cgroup up to the
root of its hierarchy: a SLURM job or a pod without its own cgroup namespace sits below the
cgroup that holds the limit. The cgroup is found through ``/proc/self/cgroup`` and located in
the file system through ``/proc/self/mountinfo``, so the namespaced view inside a container
(the cgroup is "/") and the host's view read the same limit.

``root`` is the file system's root (``/``); tests pass a folder of recorded files.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

V1_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


@dataclass(frozen=True)
class MemoryLimit:
    """A limit in bytes and where it was read (a path as the process sees it)."""

    bytes: int
    where: str


@dataclass(frozen=True)
class _Mount:
    root: PurePosixPath  # the cgroup the mount shows at its mount point
    point: PurePosixPath


def cgroup_limit(root: Path = Path("/")) -> MemoryLimit | None:
    """The smallest memory limit of the process's cgroup and its ancestors, v2 and v1 alike;
    None where no cgroup sets one (or none can be read)."""
    groups = _own_cgroups(_read(root, "/proc/self/cgroup"))
    mounts = _cgroup_mounts(_read(root, "/proc/self/mountinfo"))
    found: list[MemoryLimit] = []
    for version, limit_file in (("v2", "memory.max"), ("v1", "memory.limit_in_bytes")):
        if version not in groups:
            continue
        for mount in mounts.get(version, []):
            found += _limits_up_the_tree(root, mount, groups[version], limit_file, version)
    return min(found, key=lambda limit: limit.bytes, default=None)


def ram_bytes(root: Path = Path("/")) -> int:
    """The machine's RAM: MemTotal of /proc/meminfo."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", _read(root, "/proc/meminfo"), re.M)
    if match:
        return int(match.group(1)) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit(root: Path = Path("/")) -> MemoryLimit:
    """The cgroup's limit where it is below the machine's RAM, else the RAM."""
    ram = MemoryLimit(ram_bytes(root), "the machine's RAM, /proc/meminfo")
    limit = cgroup_limit(root)
    return limit if limit is not None and limit.bytes < ram.bytes else ram


def _read(root: Path, path: str) -> str:
    try:
        return (root / path.lstrip("/")).read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _own_cgroups(text: str) -> dict[str, PurePosixPath]:
    """/proc/self/cgroup: "0::PATH" is the v2 cgroup, "N:...memory...:PATH" the v1 memory one."""
    groups: dict[str, PurePosixPath] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, controllers, path = parts
        if number == "0" and controllers == "":
            groups["v2"] = PurePosixPath(path)
        elif "memory" in controllers.split(","):
            groups["v1"] = PurePosixPath(path)
    return groups


def _cgroup_mounts(text: str) -> dict[str, list[_Mount]]:
    """The cgroup2 mounts and the v1 mounts of the memory controller, from mountinfo's lines
    "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPEROPTIONS"."""
    mounts: dict[str, list[_Mount]] = {}
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, fs = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(fs) < 3:
            continue
        mount = _Mount(PurePosixPath(_unescape(fields[3])), PurePosixPath(_unescape(fields[4])))
        if fs[0] == "cgroup2":
            mounts.setdefault("v2", []).append(mount)
        elif fs[0] == "cgroup" and "memory" in fs[2].split(","):
            mounts.setdefault("v1", []).append(mount)
    return mounts


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _limits_up_the_tree(root: Path, mount: _Mount, group: PurePosixPath, limit_file: str,
                        version: str) -> list[MemoryLimit]:
    """Each limit set on the way from ``group`` up to the top of what ``mount`` shows."""
    try:
        below = group.relative_to(mount.root)
    except ValueError:
        return []  # the cgroup is not under this mount (another namespace's view)
    if ".." in below.parts:
        return []
    limits = []
    folder = mount.point / below
    while True:
        path = folder / limit_file
        value = _parse_limit(_read(root, str(path)))
        if value is not None:
            limits.append(MemoryLimit(value, f"cgroup {version} {path}"))
        if folder == mount.point:
            return limits
        folder = folder.parent


def _parse_limit(text: str) -> int | None:
    """memory.max: bytes or "max"; memory.limit_in_bytes: bytes, ~2**63 meaning none."""
    text = text.strip()
    if not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value < V1_UNLIMITED else None
