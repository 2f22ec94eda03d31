"""``panther-seg-cohort INPUTS... -o OUT``: batch mode on Ray, exactly once and resumable.

The driver lists the cases as batch mode does (``batch.batch_inputs``, ``batch.batch_destinations``:
the same output names), skips those ``OUT/manifest.csv`` records as done and whose outputs still
verify, and feeds the rest to the actors, at most ``--in-flight`` at a time so that memory stays
bounded. Each result is written to the manifest before the next is awaited. A refused or failing
case is recorded and the cohort goes on; a case whose worker died is retried on another worker,
up to ``MAX_ATTEMPTS`` times. The batch mode's options are ``panther-seg``'s own: they are parsed
by ``cli.parse_args`` itself, so the two commands cannot drift apart.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import batch, cli
from ..errors import InputError
from ..results import Extras
from ..io.dicomweb import is_url, location
from ..io.images import case_id, has_image_suffix
from ..io.outputs import OutputPaths, is_mask_path
from ..io.files import TEMPORARY_PREFIX
from ..contract.provenance import DEMONSTRATION_WARNING
from ..reporting.statistics import CSV_NAME, read_statistics_json, statistics_path, statistics_row, write_statistics_csv
from .manifest import MANIFEST_NAME, CaseRecord, Manifest, join_checksums

log = logging.getLogger("panther_seg")

MAX_ATTEMPTS = 3  # a case whose worker died this often is recorded as failed, not retried again
SLOWEST_SHOWN = 5
PASSED_THROUGH = ("input_root", "output_root", "inputs", "output")  # batch options the cohort sets itself


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.Namespace]:
    """The cohort's own options, and the batch mode's (every other option, parsed by
    ``panther_seg.cli.parse_args`` exactly as ``panther-seg`` parses them)."""
    p = argparse.ArgumentParser(
        prog="panther-seg-cohort",
        description="Segment a cohort on a Ray cluster (or this machine), exactly once and resumable: "
        "the outputs of panther-seg's batch mode plus OUT/manifest.csv.",
        epilog="Every other option is panther-seg's (--fast, --checkpoint, --save-pancreas, --device, ...; "
        "see panther-seg --help) and means the same here.",
    )
    p.add_argument("inputs", nargs="+", type=location, metavar="INPUT",
                   help="image files, folders of images, DICOMweb series URLs, or .csv files listing image paths or series URLs (first column)")
    p.add_argument("-o", "--output", "--output-dir", dest="output", type=Path, required=True, metavar="OUT",
                   help="folder for the outputs and manifest.csv (shared by every node of a cluster)")
    p.add_argument("--address", help="Ray cluster to join (ray start --head prints it; 'auto' finds a local one); "
                   "default: start a Ray instance on this machine")
    p.add_argument("--workers", type=int, help="segmenting actors (default: one per GPU with --gpus-per-worker, "
                   "else one per --cpus-per-worker CPUs of the cluster)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs each actor holds (default 0: CPU actors)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs each actor holds (default 1)")
    p.add_argument("--in-flight", type=int, help="cases read or being segmented at once (default 2 per worker): "
                   "bounds the object store to that many input images")
    own, rest = p.parse_known_args(argv)
    if any(a in ("-i", "--input", "--batch", "--input-root", "--output-root") for a in rest):
        p.error("inputs are positional here and -o names the output folder")
    for name in ("workers", "in_flight"):
        if getattr(own, name) is not None and getattr(own, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if own.gpus_per_worker < 0 or own.cpus_per_worker <= 0:
        p.error("--gpus-per-worker must be >= 0 and --cpus-per-worker > 0")
    if is_mask_path(own.output):
        p.error("-o names a folder here (the manifest and one mask per case go in it)")
    return own, cli.parse_args(rest)


def expand_inputs(paths: list[Path | str]) -> list[Path | str]:
    """CSV files replaced by the image paths or DICOMweb URLs in their first column (paths
    relative to the CSV's folder; a header row that names no image is skipped); everything else as given."""
    out: list[Path | str] = []
    for path in paths:
        if is_url(path) or path.suffix.lower() != ".csv" or not path.is_file():
            out.append(path)
            continue
        try:
            with open(path, newline="") as f:
                cells = [row[0].strip() for row in csv.reader(f) if row and row[0].strip()]
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise InputError(path, f"cannot read the list of images: {e}") from None
        if cells and not is_url(cells[0]) and not has_image_suffix(Path(cells[0])) and not (path.parent / cells[0]).is_dir():
            cells = cells[1:]
        if not cells:
            raise InputError(path, "lists no image")
        out += [c if is_url(c) else Path(c) if Path(c).is_absolute() else path.parent / c for c in cells]
    return out


def options_fingerprint(args: argparse.Namespace) -> str:
    """What decides the outputs' content: the batch options, and the checkpoints' and statistics'
    sizes and times (a changed weight file makes every case due again). Not the memory limit or
    the progress bar: a rerun with a higher limit redoes the refused cases only."""
    chosen = {name: str(value) for name, value in sorted(vars(cli.options_from(args)).items())
              if name not in ("progress", "memory_limit")}
    if args.statistics:  # a rerun that asks for statistics redoes the cases written without them
        chosen["statistics"] = "True"
    files = [Path(p) for p in (args.checkpoint or [])] + ([Path(args.stats)] if args.stats else [])
    chosen["files"] = [f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files if p.exists()]
    return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Case:
    source: batch.Case  # an image file or a DICOM series folder
    destination: OutputPaths
    attempts: int = 0
    submitted: float = 0.0

    @property
    def key(self) -> str:
        return self.destination.tumour.name


@dataclass
class Summary:
    counts: Counter
    rows: list[CaseRecord]
    skipped: int

    @property
    def ok(self) -> bool:
        return all(r.status == "done" for r in self.rows)


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def record_of(case: Case, outcome: Any, options: str) -> CaseRecord:
    return CaseRecord(
        case=case.key, input=str(case.source), status=outcome.status, error=outcome.error,
        outputs=join_checksums(outcome.checksums),
        tumour_ml="" if outcome.tumour_ml is None else f"{outcome.tumour_ml:.3f}",
        worker=outcome.worker, attempts=case.attempts, read_s=seconds(outcome.seconds.get("read")),
        preprocess_s=seconds(outcome.seconds.get("preprocess")), segment_s=seconds(outcome.seconds.get("segment")), write_s=seconds(outcome.seconds.get("write")),
        wall_s=seconds(time.perf_counter() - case.submitted),
        worker_peak_gib="" if outcome.worker_peak_gib is None else f"{outcome.worker_peak_gib:.2f}",
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        options=options,
    )


def remove_stale_temporaries(output: Path, destinations: list[OutputPaths]) -> None:
    """The temporaries a killed worker left beside this cohort's outputs (``io.files`` names
    them ``.tmp_<random>_<final name>``); one driver per OUT is assumed, as for the manifest."""
    names = {p.name for d in destinations for p in d.chosen().values()} | {MANIFEST_NAME}
    for path in output.glob(f"{TEMPORARY_PREFIX}*"):
        if path.is_file() and any(path.name.endswith("_" + name) for name in names):
            path.unlink(missing_ok=True)


def default_workers(gpus_per_worker: float, cpus_per_worker: float) -> int:
    import ray

    resources = ray.cluster_resources()
    if gpus_per_worker > 0:
        return max(1, math.floor(resources.get("GPU", 0) / gpus_per_worker))
    return max(1, math.floor(resources.get("CPU", 1) / cpus_per_worker))


def run_cohort(inputs: list[Path], output: Path, args: argparse.Namespace, workers: int | None = None,
               gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0, in_flight: int | None = None) -> Summary:
    """The cohort on the Ray instance this process is connected to; ``args`` are the batch
    mode's (``cli.parse_args``). Raises ``InputError`` for what stops the whole cohort (no
    inputs, clashing names, bad checkpoints); every case's own problem goes in the manifest."""
    import ray
    from tqdm import tqdm

    from .workers import Outcome, error_line, read_case, start_workers

    extras = Extras(probabilities=args.save_probabilities, pancreas=args.save_pancreas, uncertainty=args.save_uncertainty)
    if args.output_format != "image":
        raise InputError(output, "the cohort command writes image outputs only: for DICOM SEG use panther-seg")
    files = batch.batch_inputs(expand_inputs(inputs), args.series_uid, args.phase, args.dicomweb_user)
    destinations = batch.batch_destinations(files, output, extras)
    output.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output, destinations)
    manifest = Manifest.load(output)
    options = options_fingerprint(args)
    cases = [Case(src, dst) for src, dst in zip(files, destinations)]
    todo = deque(c for c in cases if not manifest.verified(c.key, c.destination.chosen(), options))
    skipped = len(cases) - len(todo)
    if skipped:
        log.info("%d of %d cases already done (outputs verified against %s)", skipped, len(cases), manifest.path)
    done_now: list[CaseRecord] = []
    if todo:
        count = workers or default_workers(gpus_per_worker, cpus_per_worker)
        count = min(count, len(todo))
        opts = {k: v for k, v in vars(cli.options_from(args)).items() if k != "progress"}
        opts["progress"] = False
        checkpoints = [str(c) for c in args.checkpoint] if args.checkpoint else None
        actors = start_workers(count, cpus_per_worker, gpus_per_worker, checkpoints,
                               str(args.stats) if args.stats else None, args.device, opts)
        limit = in_flight or 2 * count
        running: dict[Any, tuple[Case, int]] = {}
        probes: dict[Any, int] = {}  # a restarting worker's ready() call: it takes no case until that answers
        load = [0] * count
        progress = tqdm(total=len(todo), desc="cases", unit="case", file=sys.stderr, dynamic_ncols=True,
                        mininterval=0.1 if sys.stderr.isatty() else 30,  # a log file gets a line every 30 s
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
        try:
            for name, problem, device in ray.get([a.ready.remote() for a in actors]):
                if problem is not None:
                    raise InputError(None, problem)
                log.info("worker %s ready on %s", name, device)
            if ray.get(actors[0].demonstration.remote()):
                log.warning(DEMONSTRATION_WARNING)
            preparation = ray.put(ray.get(actors[0].preparation.remote()))  # the same for every worker
            start = time.perf_counter()
            while todo or running:
                up = [slot for slot in range(count) if slot not in probes.values()]
                while todo and up and len(running) < limit:
                    case = todo.popleft()
                    case.attempts += 1
                    case.submitted = time.perf_counter()
                    slot = min(up, key=load.__getitem__)
                    image = read_case.remote(case.source, preparation)
                    running[actors[slot].segment.remote(image, str(case.source), case.destination, args.statistics)] = (case, slot)
                    load[slot] += 1
                ready, _ = ray.wait(list(running) + list(probes), num_returns=1)
                if ready[0] in probes:
                    slot = probes.pop(ready[0])
                    try:
                        ray.get(ready[0])
                    except ray.exceptions.RayError:
                        probes[actors[slot].ready.remote()] = slot
                    continue
                case, slot = running.pop(ready[0])
                load[slot] -= 1
                try:
                    outcome = ray.get(ready[0])
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.ObjectLostError) as e:
                    if slot not in probes.values():
                        probes[actors[slot].ready.remote()] = slot
                    if case.attempts < MAX_ATTEMPTS:
                        log.warning("warning: %s: its worker died (%s); retrying it elsewhere", case.source, type(e).__name__)
                        todo.appendleft(case)
                        continue
                    outcome = Outcome("failed", f"its worker died {case.attempts} times ({type(e).__name__})")
                except ray.exceptions.RayError as e:  # e.g. its read task's process died every retry
                    outcome = Outcome("failed", error_line(e))
                row = record_of(case, outcome, options)
                manifest.record(row)
                done_now.append(row)
                if row.status != "done":
                    progress.write(f"error: {row.error}", file=sys.stderr)
                per_hour = (progress.n + 1) / max(time.perf_counter() - start, 1e-9) * 3600
                progress.set_postfix_str(f"{per_hour:.0f} cases/h", refresh=False)
                progress.update(1)
        finally:
            progress.close()
            for actor in actors:
                ray.kill(actor, no_restart=True)
    counts = Counter(r.status for r in done_now)
    counts["skipped (done before)"] = skipped
    if args.statistics:
        log.info("statistics of every case: %s", write_cohort_statistics(cases, manifest, output))
    return Summary(counts, done_now, skipped)


def write_cohort_statistics(cases: list[Case], manifest: Manifest, output: Path) -> Path:
    """``statistics.csv``: every case of the cohort (those done before included), from its
    statistics.json when it was written, else its manifest row's status and error."""
    rows = []
    for case in cases:
        data = read_statistics_json(statistics_path(case.destination.tumour))
        row = manifest.rows.get(case.key)
        if data is None or (row is not None and row.status != "done"):
            data = {"case": case_id(case.destination.tumour), "input": str(case.source), "status": row.status if row else "failed",
                    "error": row.error if row else "not run"}
        rows.append(statistics_row(data))
    path = output / CSV_NAME
    write_statistics_csv(path, rows)
    return path


def work_seconds(row: CaseRecord) -> float:
    """A case's own time, without the queueing that ``wall_s`` includes."""
    return sum(float(v) for v in (row.read_s, row.preprocess_s, row.segment_s, row.write_s) if v)


def report(summary: Summary, output: Path) -> None:
    """Counts by status, the cases not written with their error, and the slowest cases."""
    log.info("cases: %s", ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()) if n))
    for row in summary.rows:
        if row.status != "done":
            log.info("  %s %s: %s", row.status, row.input, row.error)
    timed = sorted((r for r in summary.rows if r.status == "done"), key=work_seconds, reverse=True)[:SLOWEST_SHOWN]
    if timed:
        log.info("slowest (read + segment + write): %s",
                 "; ".join(f"{r.case} {work_seconds(r):.1f} s ({r.worker})" for r in timed))
    log.info("manifest: %s", output / MANIFEST_NAME)


def main(argv: list[str] | None = None) -> int:
    cli.configure_logging()
    own, args = parse_args(argv)
    try:
        import ray
    except ImportError:
        log.error("error: panther-seg-cohort needs Ray: pip install \"panther-seg[cohort]\" (requirements-cohort.txt)")
        return 1
    try:
        ray.init(address=own.address, include_dashboard=False, logging_level=logging.WARNING,
                 configure_logging=True, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        log.error("error: cannot start or join Ray%s: %s", f" at {own.address}" if own.address else "", e)
        return 1
    try:
        summary = run_cohort(own.inputs, own.output, args, own.workers, own.gpus_per_worker, own.cpus_per_worker, own.in_flight)
    except InputError as e:
        log.error("error: %s", e)
        return 1
    except OSError as e:
        log.error("error: %s: %s", e.filename or "?", e.strerror or e)
        return 1
    finally:
        ray.shutdown()
    report(summary, own.output)
    if args.preview or args.report:
        from ..reporting.run import after_run

        try:
            after_run(own.output, args.preview, args.report)
        except InputError as e:
            log.error("error: %s", e)
            return 1
    from ..inference.pipeline import peak_memory  # here, not at the top: --help answers without torch

    log.info("driver: %s", peak_memory())
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
