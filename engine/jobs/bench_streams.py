"""``bench stream``: a soak (``soak.py``), or with ``--streams 1,2,4`` N live streams through one shared model
against N separate processes.

Both ways run the same source N times for the same duration with null sinks; the table gives the
aggregate output frame rate (all streams' frames over the longest stream's wall time), the worst
stream's p95 latency (capture → written) and the dropped frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cyclestream.engine.backends.options import RunOptions
from cyclestream.engine.jobs.bench_options import StreamBenchOptions
from cyclestream.engine.jobs.options import StreamOptions
from cyclestream.engine.jobs.soak import SoakReport, soak_stream
from cyclestream.engine.jobs.stream import run_streams


@dataclass(frozen=True)
class StreamsRow:
    mode: str  # "shared" (one process, one model) or "processes" (one process per stream)
    streams: int
    fps: float  # aggregate output frames per second
    p95_ms: float  # the worst stream's p95 latency
    dropped: int


def _row(mode: str, summaries: list[dict[str, Any]]) -> StreamsRow:
    wall = max(s["wall_s"] for s in summaries)
    return StreamsRow(
        mode,
        len(summaries),
        round(sum(s["frames_out"] for s in summaries) / max(wall, 1e-9), 2),
        max(s["latency_ms"]["p95"] for s in summaries),
        sum(s["dropped"] for s in summaries),
    )


def _run_args(run: RunOptions) -> list[str]:
    args = ["--backend", run.backend, "--device", run.device, "--precision", run.precision,
            "--batch-size", str(run.batch_size), "--kernels", run.kernels]
    if run.size:
        args += ["--size", f"{run.size[0]}x{run.size[1]}"]
    return args


def _separate_processes(job: StreamOptions, n: int) -> list[dict[str, Any]]:
    duration = job.duration or 0.0
    with tempfile.TemporaryDirectory(prefix="cyclestream-bench-") as folder:
        outputs = [Path(folder) / f"stream{k}.json" for k in range(n)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "cyclestream", "-q", "stream", "--model", str(job.model), "--source",
                 job.source, "--duration", str(duration), "--max-latency", str(job.max_latency), "--temporal",
                 job.temporal, "--stats-json", str(out), *_run_args(job.run)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for out in outputs
        ]
        try:
            for proc in procs:
                proc.wait(timeout=duration + 300)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return [json.loads(out.read_text()) for out in outputs if out.exists()]


@dataclass
class StreamsBench:
    rows: list[StreamsRow] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'streams':>7} {'mode':<10} {'fps (all)':>10} {'p95 ms (worst)':>15} {'dropped':>8}"]
        lines += [f"{r.streams:>7} {r.mode:<10} {r.fps:>10.1f} {r.p95_ms:>15.1f} {r.dropped:>8}" for r in self.rows]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"rows": [asdict(r) for r in self.rows]}


def bench_stream(options: StreamBenchOptions) -> SoakReport | StreamsBench:
    """``bench stream``: :func:`bench_streams` when ``options.streams`` names counts, else a soak."""
    return bench_streams(options) if options.streams else soak_stream(options)


def bench_streams(options: StreamBenchOptions) -> StreamsBench:
    """For each count N of ``options.streams``: N copies of ``options.stream`` through one shared model, then
    as N separate ``cyclestream stream`` processes (a row only when all N reported)."""
    report, job = StreamsBench(), options.stream
    for n in options.streams or ():
        report.rows.append(_row("shared", [r.summary() for r in run_streams([job] * n)]))
        summaries = _separate_processes(job, n)
        if len(summaries) == n:
            report.rows.append(_row("processes", summaries))
    return report
