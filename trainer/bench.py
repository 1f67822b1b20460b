"""``cyclestream bench train``: seconds per iteration and peak memory of each training mode, side by side.

Each mode (trainer/speed.py: precision × compile × layout) trains in a fresh process through the same
``train`` a user runs (``--max-iters``, no samples), so its peak resident memory is its own and no compile
cache or allocator state carries from one mode to the next; modes are timed in turns (``--rounds``), and
each row's ratio is to eager fp32 of the same run, the official code's own arithmetic and speed.  The
first ``--warmup`` iterations (the compile, the allocator's first sizes) are reported apart and not timed.
The rows are recorded for ``train``'s ``auto`` (trainer/speed.py) under the configuration's key.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.options import resolve_device
from cyclestream.trainer.bench_options import TrainBenchOptions
from cyclestream.trainer.options import DataOptions, ModelOptions, OptimOptions, TrainOptions, TrainRunOptions
from cyclestream.trainer.speed import Speed, modes, store_record

REFERENCE = Speed()  # eager fp32: what every ratio is to


@dataclass(frozen=True)
class ModeResult:
    """One mode's measurements: median seconds per timed iteration (over rounds, each its own median), the
    warm-up iterations' seconds (the first holds the compile), peak RSS and CUDA memory in MiB."""

    speed: Speed
    seconds: float
    warmup_seconds: list[float]
    peak_rss_mb: float
    peak_cuda_mb: float
    rounds: list[float]

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.speed.name, "speed": self.speed.to_dict(), "seconds": self.seconds,
                "warmup_seconds": self.warmup_seconds, "peak_rss_mb": self.peak_rss_mb,
                "peak_cuda_mb": self.peak_cuda_mb, "rounds": self.rounds}


@dataclass
class TrainBenchReport:
    machine: dict[str, Any]
    config: dict[str, Any]
    results: list[ModeResult] = field(default_factory=list)
    record: str | None = None

    @property
    def reference(self) -> ModeResult | None:
        return next((r for r in self.results if r.speed == REFERENCE), None)

    def ratio(self, result: ModeResult) -> float:
        ref = self.reference
        return ref.seconds / result.seconds if ref and result.seconds > 0 else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"machine": self.machine, "config": self.config, "record": self.record,
                "results": [{**r.to_json(), "speedup": round(self.ratio(r), 3)} for r in self.results]}


# ----------------------------------------------------------------------------- the data


def noise_images(folder: Path, count: int, height: int, width: int, seed: int) -> Path:
    """``count`` RGB noise PNGs (the step's cost does not depend on what the pictures show; the dataset
    resizes them to the recipe's load size as it would any image)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def data_options(options: TrainBenchOptions, scratch: Path) -> DataOptions:
    """The bench's data: the folders asked for, or generated noise for cyclegan and pix2pix (A|B pairs)."""
    crop, need = options.crop_size, (options.warmup + options.iterations) * options.batch_size + 1
    if options.dataroot is not None or options.data is not None:
        return DataOptions(dataroot=options.dataroot, data=options.data, crop_size=crop)
    if options.model == "cyclegan":
        return DataOptions(data_a=noise_images(scratch / "A", need, crop, crop, 1),
                           data_b=noise_images(scratch / "B", need, crop, crop, 2), crop_size=crop)
    if options.model == "pix2pix":
        return DataOptions(data=noise_images(scratch / "AB", need, crop, 2 * crop, 3), crop_size=crop)
    raise CycleStreamError(f"bench train --model {options.model}: give its images with --data or --dataroot")


def run_options(options: TrainBenchOptions, speed: Speed, data: DataOptions, out: Path) -> TrainOptions:
    """A run of ``warmup + iterations`` steps of ``speed``: what ``cyclestream train`` would run."""
    on = {True: "on", False: "off"}
    return TrainOptions(
        data=data,
        model=ModelOptions(model=options.model, ngf=options.ngf, n_blocks=options.n_blocks, ndf=options.ndf),
        optim=OptimOptions(batch_size=options.batch_size, epochs=1000, epochs_decay=0),
        run=TrainRunOptions(out=out, device=options.device, precision=speed.precision, compile=on[speed.compile],
                            channels_last=on[speed.channels_last], max_iters=options.warmup + options.iterations,
                            samples=0, progress=False, log_every=1, threads=options.threads),
    )


# ----------------------------------------------------------------------------- one mode, in its own process


def _child(options: TrainBenchOptions, speed: Speed, data: DataOptions, out: Path, conn: Any) -> None:
    try:
        import torch

        from cyclestream.trainer.loop import train
        from cyclestream.trainer.speed import speed_key

        run = run_options(options, speed, data, out)
        result = train(run)
        lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        seconds = [float(x["seconds"]) for x in lines]
        key = speed_key(run.resolved(), torch.device(resolve_device(options.device)))
        conn.send({"ok": True, "seconds": seconds, "rss": result.peak_rss_mb, "cuda": result.peak_cuda_mb, "key": key})
    except BaseException as e:
        conn.send({"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0]})
    finally:
        conn.close()


def time_mode(options: TrainBenchOptions, speed: Speed, data: DataOptions, scratch: Path) -> dict[str, Any]:
    """One mode's run in a fresh process: its per-iteration seconds, peak memory and record key."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    out = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
    process = context.Process(target=_child, args=(options, speed, data, out, child), daemon=True)
    process.start()
    child.close()
    try:
        reply = parent.recv()
    except EOFError:
        reply = {"ok": False, "error": f"the process died (exit {process.exitcode})"}
    process.join()
    if not reply["ok"]:
        raise CycleStreamError(f"bench train: {speed.name} failed: {reply['error']}")
    return reply


def bench_train(options: TrainBenchOptions, *, cache_dir: Path | None = None) -> TrainBenchReport:
    """Time every asked mode (eager fp32 always), in turns for ``rounds`` rounds; record the rows."""
    import torch

    from cyclestream.engine.machine import describe_machine
    from cyclestream.trainer.speed import has_bf16

    device = torch.device(resolve_device(options.device))
    available = modes(device.type, bf16=has_bf16(device))
    wanted = [s for s in available if s == REFERENCE or not options.modes or s.name in options.modes]
    missing = [m for m in options.modes if m not in {s.name for s in available}]
    if missing:
        raise CycleStreamError(f"bench train --modes: {', '.join(missing)} cannot run fast on {device} here "
                               f"(it has: {', '.join(s.name for s in available)})")
    machine = describe_machine()
    config = {"model": options.model, "crop": options.crop_size, "batch": options.batch_size, "ngf": options.ngf,
              "n_blocks": options.n_blocks, "ndf": options.ndf, "device": str(device), "warmup": options.warmup,
              "iterations": options.iterations, "rounds": options.rounds}
    report = TrainBenchReport(machine, config)
    runs: dict[Speed, list[dict[str, Any]]] = {s: [] for s in wanted}
    key: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="cyclestream-bench-train-") as tmp:
        scratch = Path(tmp)
        data = data_options(options, scratch / "data")
        total = options.rounds * len(wanted)
        for n in range(total):
            speed = wanted[n % len(wanted)]
            started = time.perf_counter()
            reply = time_mode(options, speed, data, scratch)
            runs[speed].append(reply)
            key = reply["key"]
            if options.progress:
                timed = reply["seconds"][options.warmup:]
                print(f"[{n + 1}/{total}] {speed.name}: {statistics.median(timed):.3f} s/iteration "
                      f"({time.perf_counter() - started:.0f} s with start-up and warm-up)", flush=True)
    for speed, replies in runs.items():
        medians = [statistics.median(r["seconds"][options.warmup:]) for r in replies]
        report.results.append(ModeResult(
            speed, round(statistics.median(medians), 4), [round(x, 3) for x in replies[0]["seconds"][:options.warmup]],
            max(r["rss"] for r in replies), max(r["cuda"] for r in replies), [round(m, 4) for m in medians]))
    if options.record and key is not None:
        path = store_record(key, [{"speed": r.speed.to_dict(), "seconds": r.seconds} for r in report.results],
                            cache_dir)
        report.record = str(path) if path else None
    return report


def table(report: TrainBenchReport) -> str:
    """The side-by-side table, the machine named above it."""
    from cyclestream.engine.machine import one_line

    c = report.config
    lines = [f"machine: {one_line(report.machine)}",
             f"{c['model']}, {c['crop']}² crops, batch {c['batch']}, on {c['device']}; median of {c['iterations']} "
             f"iterations after {c['warmup']} warm-up, {c['rounds']} round(s)",
             "",
             f"{'mode':<18} {'s/iteration':>11} {'speed-up':>9} {'first it. s':>11} {'peak RSS MiB':>13}"
             + (f" {'peak CUDA MiB':>14}" if any(r.peak_cuda_mb for r in report.results) else "")]
    for r in report.results:
        row = (f"{r.speed.name:<18} {r.seconds:>11.3f} {report.ratio(r):>8.2f}x {r.warmup_seconds[0]:>11.1f} "
               f"{r.peak_rss_mb:>13.0f}")
        lines.append(row + (f" {r.peak_cuda_mb:>14.0f}" if r.peak_cuda_mb else ""))
    if report.record:
        lines += ["", f"recorded for `train --precision/--compile/--channels-last auto`: {report.record}"]
    return "\n".join(lines)


def markdown(report: TrainBenchReport) -> str:
    lines = ["| mode | s/iteration | speed-up | first iteration (s) | peak RSS (MiB) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.speed.name} | {r.seconds:.3f} | {report.ratio(r):.2f}× | {r.warmup_seconds[0]:.1f} | "
              f"{r.peak_rss_mb:.0f} |" for r in report.results]
    return "\n".join(lines)
