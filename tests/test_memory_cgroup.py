"""Without --memory-limit or $PANTHER_MEMORY_LIMIT_GIB the budget follows the container: the
memory limit of the process's own cgroup (v2 memory.max, v1 memory.limit_in_bytes), the smallest
on the way up its hierarchy, capped by the RAM, less a 1 GiB reserve. Each test lays out the
files a kernel shows (/proc/self/cgroup, /proc/self/mountinfo, /proc/meminfo, the cgroup
folders) under tmp_path, as recorded on real machines, and reads them through the real code."""
from __future__ import annotations

from pathlib import Path

import pytest

from panther_seg.config import MEMORY_LIMIT_ENV, MEMORY_RESERVE_GIB
from panther_seg.errors import InputError
from panther_seg.system.cgroup import cgroup_limit, memory_limit, ram_bytes
from panther_seg.system.memory import GIB, MemoryBudget

V1_NONE = "9223372036854771712"  # what cgroup v1 shows where no limit is set
RAM_KB = 64 * 1024 * 1024  # a 64 GiB host

# /proc/self/mountinfo lines as the kernel writes them.
V2_MOUNT = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot"
V2_CONTAINER_MOUNT = "1038 1029 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot"
V1_MOUNTS = """31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw"""
OTHER_MOUNTS = """22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw"""


def machine(tmp: Path, cgroup: str, mountinfo: str, files: dict[str, str], ram_kb: int = RAM_KB) -> Path:
    """A root folder holding a recorded /proc and cgroup tree."""
    root = tmp / "root"
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "self" / "cgroup").write_text(cgroup)
    (root / "proc" / "self" / "mountinfo").write_text(OTHER_MOUNTS + "\n" + mountinfo + "\n")
    (root / "proc" / "meminfo").write_text(f"MemTotal:       {ram_kb} kB\nMemFree:         1234 kB\n")
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n")
    return root


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)


def test_a_docker_container_on_cgroup_v2_gets_its_limit_less_the_reserve(tmp_path):
    """docker run --memory 8g: its own cgroup namespace, so the cgroup is "/" at /sys/fs/cgroup."""
    root = machine(tmp_path, "0::/\n", V2_CONTAINER_MOUNT, {"/sys/fs/cgroup/memory.max": str(8 * GIB)})
    budget = MemoryBudget.resolve(root=root)
    assert budget.limit_gib == 8 - MEMORY_RESERVE_GIB == 7
    assert budget.describe() == ("memory limit 7 GiB (cgroup v2 /sys/fs/cgroup/memory.max: 8 GiB less a 1 GiB reserve; "
                                 f"set ${MEMORY_LIMIT_ENV} or --memory-limit to change it)")


def test_no_limit_on_cgroup_v2_falls_back_to_the_ram(tmp_path):
    root = machine(tmp_path, "0::/\n", V2_CONTAINER_MOUNT, {"/sys/fs/cgroup/memory.max": "max"})
    assert cgroup_limit(root) is None
    budget = MemoryBudget.resolve(root=root)
    assert budget.limit_gib == 63
    assert budget.source.startswith("the machine's RAM, /proc/meminfo: 64 GiB less a 1 GiB reserve")


def test_a_slurm_job_below_the_root_takes_the_smallest_limit_up_its_hierarchy(tmp_path):
    """A SLURM task on a cgroup v2 host (no namespace): the limit is set on the job, two levels up,
    and a larger one on the slice above it; the task and the step set none."""
    job = "/sys/fs/cgroup/system.slice/slurmstepd.scope/job_42"
    root = machine(tmp_path, "0::/system.slice/slurmstepd.scope/job_42/step_0/user/task_0\n", V2_MOUNT, {
        "/sys/fs/cgroup/system.slice/memory.max": str(32 * GIB),
        "/sys/fs/cgroup/system.slice/slurmstepd.scope/memory.max": "max",
        f"{job}/memory.max": str(12 * GIB),
        f"{job}/step_0/memory.max": "max",
        f"{job}/step_0/user/memory.max": "max",
        f"{job}/step_0/user/task_0/memory.max": "max",
    })
    assert cgroup_limit(root).bytes == 12 * GIB
    budget = MemoryBudget.resolve(root=root)
    assert budget.limit_gib == 11
    assert budget.source.startswith(f"cgroup v2 {job}/memory.max: 12 GiB less")


def test_a_kubernetes_pod_on_cgroup_v1_without_a_namespace_reads_the_pod_limit(tmp_path):
    """cgroup v1, host view: the container's cgroup sets no limit, the pod's does."""
    pod = "/kubepods/burstable/pod0d3c"
    root = machine(tmp_path, f"12:pids:{pod}/c0ffee\n4:memory:{pod}/c0ffee\n1:name=systemd:{pod}/c0ffee\n0::/\n", V1_MOUNTS, {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes": V1_NONE,
        "/sys/fs/cgroup/memory/kubepods/memory.limit_in_bytes": str(60 * GIB),
        "/sys/fs/cgroup/memory/kubepods/burstable/memory.limit_in_bytes": V1_NONE,
        f"/sys/fs/cgroup/memory{pod}/memory.limit_in_bytes": str(6 * GIB),
        f"/sys/fs/cgroup/memory{pod}/c0ffee/memory.limit_in_bytes": V1_NONE,
    })
    limit = memory_limit(root)
    assert (limit.bytes, limit.where) == (6 * GIB, f"cgroup v1 /sys/fs/cgroup/memory{pod}/memory.limit_in_bytes")
    assert MemoryBudget.resolve(root=root).limit_gib == 5


def test_a_docker_container_on_cgroup_v1_sees_its_own_cgroup_mounted_as_the_root(tmp_path):
    """Docker without a cgroup namespace bind-mounts the container's cgroup at /sys/fs/cgroup/memory:
    /proc/self/cgroup names /docker/ID, mountinfo's root field is that same path."""
    cid = "/docker/4f1e0c"
    mount = f"1195 1187 0:33 {cid} /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:15 - cgroup cgroup rw,memory"
    root = machine(tmp_path, f"4:memory:{cid}\n0::/\n", mount,
                   {"/sys/fs/cgroup/memory/memory.limit_in_bytes": str(4 * GIB)})
    assert memory_limit(root).where == "cgroup v1 /sys/fs/cgroup/memory/memory.limit_in_bytes"
    assert MemoryBudget.resolve(root=root).limit_gib == 3


def test_cgroup_v1_without_a_limit_anywhere_is_no_limit(tmp_path):
    """The layout of a machine in a v1 memory cgroup that sets none (2**63 rounded to pages)."""
    group = "/process_api/4555a8c0"
    root = machine(tmp_path, f"9:name=systemd:/\n4:memory:{group}\n0::/\n", V1_MOUNTS, {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes": V1_NONE,
        "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes": V1_NONE,
        f"/sys/fs/cgroup/memory{group}/memory.limit_in_bytes": V1_NONE,
    })
    assert cgroup_limit(root) is None
    assert memory_limit(root).bytes == ram_bytes(root) == RAM_KB * 1024


def test_a_limit_above_the_ram_is_capped_by_the_ram(tmp_path):
    root = machine(tmp_path, "0::/\n", V2_CONTAINER_MOUNT, {"/sys/fs/cgroup/memory.max": str(128 * GIB)}, ram_kb=16 * 1024 * 1024)
    budget = MemoryBudget.resolve(root=root)
    assert budget.limit_gib == 15 and "the machine's RAM" in budget.source


def test_a_hybrid_host_takes_the_smaller_of_the_v1_and_v2_limits(tmp_path):
    root = machine(tmp_path, "4:memory:/job\n0::/job\n", V1_MOUNTS, {
        "/sys/fs/cgroup/memory/job/memory.limit_in_bytes": str(10 * GIB),
        "/sys/fs/cgroup/unified/job/memory.max": str(9 * GIB),
    })
    assert memory_limit(root).where == "cgroup v2 /sys/fs/cgroup/unified/job/memory.max"


def test_a_mount_point_with_a_space_is_unescaped(tmp_path):
    mount = r"40 24 0:30 / /cg\040root rw - cgroup2 cgroup2 rw"
    root = machine(tmp_path, "0::/a\n", mount, {"/cg root/a/memory.max": str(5 * GIB)})
    assert memory_limit(root).bytes == 5 * GIB


def test_a_small_container_keeps_half_rather_than_nothing(tmp_path):
    root = machine(tmp_path, "0::/\n", V2_CONTAINER_MOUNT, {"/sys/fs/cgroup/memory.max": str(GIB + GIB // 2)})
    assert MemoryBudget.resolve(root=root).limit_gib == 0.75


def test_the_option_and_the_variable_come_before_the_cgroup(tmp_path, monkeypatch):
    root = machine(tmp_path, "0::/\n", V2_CONTAINER_MOUNT, {"/sys/fs/cgroup/memory.max": str(4 * GIB)})
    assert MemoryBudget.resolve(10, root=root) == MemoryBudget(10, "--memory-limit")
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "9")
    assert MemoryBudget.resolve(root=root) == MemoryBudget(9, f"${MEMORY_LIMIT_ENV}")
    assert MemoryBudget.resolve(2, root=root) == MemoryBudget(2, "--memory-limit")


def test_a_case_over_a_4g_containers_budget_is_refused_naming_the_cgroup(tmp_path):
    """grand-challenge's smallest setting: 4 GB, so a 3 GiB budget; a 300 x 300 x 120 float32
    MRI at the target spacing is estimated at about 3.3 GiB."""
    root = machine(tmp_path, "0::/\n", V2_CONTAINER_MOUNT, {"/sys/fs/cgroup/memory.max": str(4 * GIB)})
    budget = MemoryBudget.resolve(root=root)
    budget.check_image_size("big.mha", (300, 300, 120), 4)  # the image alone fits
    with pytest.raises(InputError) as e:
        budget.check_target_grid("big.mha", (300, 300, 120), (300, 300, 120), 4)
    assert str(e.value).startswith("big.mha: network grid of 300 x 300 x 120 voxels (x, y, z) needs about ")
    assert str(e.value).endswith("over the limit of 3 GiB (cgroup v2 /sys/fs/cgroup/memory.max: 4 GiB less a 1 GiB reserve; "
                                 f"set ${MEMORY_LIMIT_ENV} or --memory-limit to change it)")


def test_nothing_readable_falls_back_to_the_ram(tmp_path):
    """No /proc at all under the root (a sandbox): no cgroup limit, the RAM from sysconf."""
    (tmp_path / "empty").mkdir()
    assert cgroup_limit(tmp_path / "empty") is None
    assert memory_limit(tmp_path / "empty").bytes > 0


def test_this_machine_resolves_a_limit_no_larger_than_its_ram():
    limit = memory_limit()
    assert 0 < limit.bytes <= ram_bytes()
    assert MemoryBudget.resolve().limit_gib < limit.bytes / GIB
