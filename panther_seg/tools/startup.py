"""What a case pays before and around its stages: grand-challenge starts a fresh container, so a
fresh process, for every case.

``python -m panther_seg.tools.startup CASE [--repeats 3] [--device cpu] [--code DIR]``

Each figure comes from fresh processes (median of ``--repeats``): ``panther-seg --help``; the
imports a case needs and ``Segmenter.from_resources`` (loading and checking the checkpoint),
timed inside a child; and a whole ``--fast`` run of CASE, whose fixed cost is its wall time (the
parent's clock, interpreter start included) less the stage timings the run logs. ``--code``
measures the ``panther_seg`` of another checkout (a before/after comparison on one machine).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent

# what the installed ``panther-seg`` script runs
SEGMENT = "import sys; from panther_seg.commands import segment; sys.exit(segment())"
# the imports of a case and the checkpoint's loading, timed inside a fresh process
PROBE = """import json, sys, time
start, start_cpu = time.perf_counter(), time.process_time()
import panther_seg.cli, panther_seg.batch, panther_seg.inference.pipeline as pipeline, panther_seg.system.device
imported, imported_cpu = time.perf_counter(), time.process_time()
pipeline.Segmenter.from_resources(json.loads(sys.argv[1]) or None, device=sys.argv[2], fast=True)
print(json.dumps({"imports_s": imported - start, "checkpoint_s": time.perf_counter() - imported,
                  "imports_cpu_s": imported_cpu - start_cpu, "checkpoint_cpu_s": time.process_time() - imported_cpu}))"""
# a stage's log line, as ``results.Timings.stage`` writes it: two spaces, the name, seconds
STAGE_LINE = re.compile(r"^  (\S[^\d(]*?)\s+(\d+\.\d+) s$", re.MULTILINE)


def stage_seconds(log: str) -> dict[str, float]:
    """The stage timings a run logged (each stage's last line: a stage's line gives its total)."""
    return {name: float(seconds) for name, seconds in STAGE_LINE.findall(log)}


def _environment(code: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH", "")) if p)
    return env


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(command: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds of a fresh process, and its output; a failure raises with its last
    lines. (On a busy machine the CPU seconds stay near what a quiet one's wall time would be.)"""
    cpu, start = _cpu_of_children(), time.perf_counter()
    done = subprocess.run(list(command), capture_output=True, text=True, env=env, cwd=cwd)
    wall, cpu = time.perf_counter() - start, _cpu_of_children() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"{command[2] if len(command) > 2 else command}: exit {done.returncode}: {done.stderr[-1500:]}")
    return wall, cpu, done.stdout


def startup_cost(case: Path, repeats: int = 3, device: str = "cpu", checkpoints: Sequence[Path] = (),
                 code: Path = PACKAGE_PARENT) -> dict[str, Any]:
    """Medians over ``repeats`` rounds of the three fresh-process measurements (rounds interleave
    them, so a busy machine weighs on each alike), and each round's figures."""
    env = _environment(code)
    checkpoint_args = [a for c in checkpoints for a in ("--checkpoint", str(c))]
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for i in range(repeats):
            help_s, help_cpu_s, _ = _run([sys.executable, "-c", SEGMENT, "--help"], env, cwd)
            _, _, probe = _run([sys.executable, "-c", PROBE, json.dumps([str(c) for c in checkpoints]), device], env, cwd)
            wall, _, log = _run([sys.executable, "-c", SEGMENT, "-i", str(case), "-o", str(cwd / f"mask{i}.mha"),
                              "--fast", "--device", device, *checkpoint_args], env, cwd)
            stages = stage_seconds(log)
            rounds.append({"help_s": help_s, "help_cpu_s": help_cpu_s, **json.loads(probe), "case_wall_s": wall,
                           "case_stages_s": sum(stages.values()), "fixed_s": wall - sum(stages.values()), "stages": stages})
    keys = ("help_s", "imports_s", "checkpoint_s", "case_wall_s", "case_stages_s", "fixed_s", "help_cpu_s", "imports_cpu_s",
            "checkpoint_cpu_s")
    medians = {k: round(statistics.median(r[k] for r in rounds), 3) for k in keys}
    return {**medians, "repeats": repeats, "device": device, "case": case.name,
            "rounds": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rounds]}


def describe(cost: dict[str, Any]) -> str:
    """The benchmark's start-up line."""
    return (f"start-up (fresh processes, median of {cost['repeats']}): --help {cost['help_s']:.2f} s, "
            f"imports {cost['imports_s']:.2f} s, checkpoint {cost['checkpoint_s']:.2f} s; fixed cost of a --fast case "
            f"{cost['fixed_s']:.2f} s (wall {cost['case_wall_s']:.2f} s - stages {cost['case_stages_s']:.2f} s, {cost['case']}); "
            f"CPU s: --help {cost['help_cpu_s']:.2f}, imports {cost['imports_cpu_s']:.2f}, checkpoint {cost['checkpoint_cpu_s']:.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m panther_seg.tools.startup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", type=Path, help="an image the --fast runs segment")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--checkpoint", type=Path, action="append", default=[])
    p.add_argument("--code", type=Path, default=PACKAGE_PARENT, help="the folder holding the panther_seg to measure")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    from ..system.machine import summary

    cost = startup_cost(args.case.resolve(), args.repeats, args.device, [c.resolve() for c in args.checkpoint], args.code.resolve())
    cost["machine"] = summary()
    print(describe(cost))
    print(f"machine: {cost['machine']}")
    if args.json:
        args.json.write_text(json.dumps(cost, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
