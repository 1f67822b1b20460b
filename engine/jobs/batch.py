"""The batch job: translate many videos and images (or one long video in segments), here or on Ray.

Top to bottom: find the items (``batch_plan``) → plan: skip those whose output is finished with the same
model and settings, cut long videos into segments (``batch_state``, ``media/segments.py``) → run the units
on one in-process worker or on Ray actors (``batch_worker``, ``batch_ray``) → as a video's last segment
arrives, join its segments into the output (``batch_state``) → the summary.
Every output is written atomically and recorded once complete, so a rerun after a crash or Ctrl-C
skips what was finished (finished segments of an unfinished video included) and redoes the rest.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.errors import CycleStreamError, OutputError
from cyclestream.engine.jobs.batch_plan import find_items, items_text
from cyclestream.engine.jobs.batch_state import BatchState, ItemOutcome
from cyclestream.engine.jobs.batch_worker import BatchWorker, UnitHook
from cyclestream.engine.jobs.options import BatchOptions
from cyclestream.engine.paths import file_sha256
from cyclestream.engine.signals import signals_not_swallowed

__all__ = ["BatchFailed", "BatchOptions", "BatchReport", "ItemOutcome", "run_batch"]

log = logging.getLogger("cyclestream")


@dataclass
class BatchReport:
    outcomes: list[ItemOutcome]
    seconds: float
    where: str
    startup: float = 0.0  # until the first worker was ready (model loaded)

    def of(self, status: str) -> list[ItemOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def frames(self) -> int:
        return sum(o.frames for o in self.of("done"))

    @property
    def fps(self) -> float:
        work = self.seconds - self.startup
        return self.frames / work if work > 0 else 0.0

    def lines(self) -> list[str]:
        done, skipped, failed = self.of("done"), self.of("skipped"), self.of("failed")
        out = [f"batch ({self.where}): {items_text(len(self.outcomes))}: {len(done)} done, {len(skipped)} skipped "
               f"(finished before with this model and settings), {len(failed)} failed"]
        if done:
            out.append(f"translated {self.frames} frames in {self.seconds:.1f} s: {self.fps:.2f} frames/s after "
                       f"the workers started ({self.startup:.1f} s)")
        reused = sum(o.reused for o in self.outcomes)
        if reused:
            out.append(f"{reused} segments finished by an earlier run were reused")
        retried = [o for o in self.outcomes if o.retried]
        if retried:
            names = ", ".join(o.item.rel for o in retried)
            out.append(f"{items_text(len(retried))} retried after a worker died: {names}")
        return out


class BatchFailed(CycleStreamError):
    """Some items failed; the others were written.  ``report`` says which, with their reasons."""

    def __init__(self, report: BatchReport) -> None:
        failed = report.of("failed")
        super().__init__(f"{len(failed)} of {items_text(len(report.outcomes))} failed (listed above); rerun the same "
                         "command to retry them (finished items are skipped)")
        self.report = report


def run_batch(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    options: BatchOptions,
    *,
    on_unit: UnitHook | None = None,
) -> BatchReport:
    """Translate every item of ``inputs`` into ``out_dir``; see the module docstring.  Raises
    :class:`BatchFailed` (after the others are written) when some items failed.  ``on_unit`` is called in
    the worker as each unit starts (see ``batch_worker.UnitHook``).  Every thread the job starts has ended
    when it returns or raises."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder")
    items = find_items([Path(p) for p in inputs], out, options.container)
    if options.ray is not None:
        from cyclestream.engine.jobs.batch_ray import preflight

        preflight(options.ray)
    if not Path(model_path).is_file():
        load_model(model_path)  # its one-line error: not found, a folder
    topts = dataclasses.replace(options.translate, preview=False, progress=False)
    if options.ray and options.gpus_per_worker > 0 and topts.run.device == "cpu":
        topts = dataclasses.replace(topts, run=dataclasses.replace(topts.run, device="cuda"))
    batch = BatchState(out, topts, file_sha256(Path(model_path)), options.segment_seconds)
    batch.plan(items)
    startup = 0.0
    with _Bar(total=batch.total_frames, initial=batch.frames_done, unit="frame", desc="batch",
              disable=not options.progress or not batch.units, dynamic_ncols=True) as bar:
        batch.bar = bar
        try:
            batch.complete_ready()
            if not batch.units:
                where = "nothing to run"
            elif options.ray is None:
                model = load_model(model_path)
                worker = BatchWorker(str(model_path), batch.model_sha, topts, str(out), on_unit, model=model)
                startup = time.perf_counter() - t0
                _run_here(worker, batch)
                where = "in-process"
            else:
                load_model(model_path)  # fails here, once, with one line, if it is not a generator
                worker_args = (str(model_path), batch.model_sha, topts, str(out), on_unit)
                startup, where = _run_on_ray(options, batch, worker_args)
                startup -= t0
        except KeyboardInterrupt as e:
            batch.interrupted(e)
            raise
    report = BatchReport(list(batch.outcomes.values()), time.perf_counter() - t0, where, startup)
    if report.of("failed"):
        raise BatchFailed(report)
    return report


class _Bar(tqdm):
    monitor_interval = 0  # no tqdm monitor thread: none of the job's threads outlives it


def _run_here(worker: BatchWorker, batch: BatchState) -> None:
    """Every unit in this process, a thread polling the progress beside it (joined before returning: one
    still running as the interpreter shuts down has aborted the process after the job succeeded)."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            batch.advance(worker.progress())

    poller = threading.Thread(target=poll, name="cyclestream-batch-progress", daemon=True)
    poller.start()
    try:
        for unit in sorted(batch.units, key=lambda u: (u.item.rel, u.id)):
            with signals_not_swallowed():  # PyAV turns Ctrl-C/SIGTERM in an open into an error of its own
                result = worker.run(unit)
            batch.finish(unit, result)
    finally:
        stop.set()
        poller.join()
        worker.close()


def _run_on_ray(options: BatchOptions, batch: BatchState, worker_args: tuple) -> tuple[float, str]:
    from cyclestream.engine.jobs.batch_ray import RayPool, connect, default_workers

    assert options.ray is not None
    wanted = options.workers or 0
    cpus = max(os.cpu_count() or 1, int(wanted * options.cpus_per_worker + 0.999))
    with connect(options.ray, cpus) as ray:
        workers = default_workers(ray, options.cpus_per_worker, options.gpus_per_worker, options.workers)
        pool = RayPool(ray, worker_args, workers, options.cpus_per_worker, options.gpus_per_worker, options.retries)
        try:
            pool.run(batch.units, batch.finish, batch.advance)
        finally:
            pool.close()
        return pool.ready_at or time.perf_counter(), f"Ray {options.ray}, {workers} workers"
