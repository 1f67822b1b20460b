"""``bench stream``: a live job run for a while (a soak), sampling its memory and open files.

A 24/7 job must stay flat: the report gives the resident memory and open file descriptors at the
start and end, their growth per hour (a least-squares slope over the samples after a warm-up), the
dropped frames and the latency percentiles of the run.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cyclestream.engine.jobs.bench_options import StreamBenchOptions
from cyclestream.engine.jobs.stream import run_stream

WARMUP_SHARE = 0.2  # the first fifth of the samples (allocator and caches settling) is left out of the slopes


def rss_mb() -> float:
    """This process's resident memory now, in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def open_fds() -> int:
    """File descriptors open in this process now (Linux /proc; 0 elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def per_hour(times: list[float], values: list[float]) -> float:
    """Least-squares growth of ``values`` per hour of ``times`` (seconds), after the warm-up share."""
    start = int(len(times) * WARMUP_SHARE)
    t, v = np.asarray(times[start:]), np.asarray(values[start:])
    if len(t) < 2 or float(np.ptp(t)) == 0.0:
        return 0.0
    return float(np.polyfit(t, v, 1)[0] * 3600)


@dataclass
class SoakReport:
    stream: dict[str, Any]
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (seconds, RSS MiB, open fds)

    def to_json(self) -> dict[str, Any]:
        times = [s[0] for s in self.samples]
        rss = [s[1] for s in self.samples]
        fds = [float(s[2]) for s in self.samples]
        return {
            "source": self.stream["source"],
            "wall_s": self.stream["wall_s"],
            "frames_in": self.stream["frames_in"],
            "frames_out": self.stream["frames_out"],
            "dropped": self.stream["dropped"],
            "input_fps": self.stream["input_fps"],
            "output_fps": self.stream["output_fps"],
            "latency_ms": self.stream["latency_ms"],
            "rss_mb": {"start": round(rss[0], 1), "end": round(rss[-1], 1)} if rss else {},
            "rss_mb_per_hour": round(per_hour(times, rss), 2),
            "open_fds": {"start": int(fds[0]), "end": int(fds[-1])} if fds else {},
            "open_fds_per_hour": round(per_hour(times, fds), 2),
            "samples": len(self.samples),
        }

    def table(self) -> str:
        j = self.to_json()
        lat = j["latency_ms"]
        return "\n".join(
            [
                f"soak of {j['source']} for {j['wall_s']:.0f} s",
                f"  frames      in {j['frames_in']}, out {j['frames_out']}, dropped {j['dropped']} "
                f"({j['input_fps']} fps in, {j['output_fps']} fps out)",
                f"  latency     p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms",
                f"  memory      {j['rss_mb'].get('start')} → {j['rss_mb'].get('end')} MiB RSS, "
                f"slope {j['rss_mb_per_hour']:+.1f} MiB/h",
                f"  open files  {j['open_fds'].get('start')} → {j['open_fds'].get('end')}, "
                f"slope {j['open_fds_per_hour']:+.1f}/h",
            ]
        )


def soak_stream(options: StreamBenchOptions) -> SoakReport:
    """Run the live job ``options.stream`` for its duration, sampling memory and files every ``options.interval`` s."""
    interval = options.interval
    samples: list[tuple[float, float, int]] = []
    done = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not done.wait(interval):
            samples.append((time.monotonic() - t0, rss_mb(), open_fds()))

    sampler = threading.Thread(target=sample, name="cyclestream-soak", daemon=True)
    sampler.start()
    try:
        report = run_stream(options.stream)
    finally:
        done.set()
        sampler.join()
    return SoakReport(report.summary(), samples)
