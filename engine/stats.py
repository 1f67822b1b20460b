"""Timings shared by translate, stream and bench: per-stage busy time, throughput, latency percentiles."""

from __future__ import annotations

import collections
import itertools
import threading
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class StageTimer:
    """Busy time and item count of one pipeline stage (time spent working, not waiting on queues)."""

    name: str
    busy: float = 0.0
    items: int = 0
    calls: int = 0  # items / calls: the batch size actually reached

    def add(self, seconds: float, items: int = 1) -> None:
        self.busy += seconds
        self.items += items
        self.calls += 1

    @property
    def fps(self) -> float:
        return self.items / self.busy if self.busy > 0 else 0.0


LATENCY_WINDOW = 10_000  # frames kept for percentiles: memory stays flat however long a job runs


@dataclass
class PipelineStats:
    stages: dict[str, StageTimer] = field(default_factory=dict)
    # seconds, source → sink, of the last LATENCY_WINDOW frames (percentiles are over this window)
    latencies: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    dropped: int = 0
    _frames: int = 0
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stage(self, name: str) -> StageTimer:
        with self._lock:
            return self.stages.setdefault(name, StageTimer(name))

    def record(self, latency: float) -> None:
        """One frame reached the sink ``latency`` seconds after it was captured."""
        self._frames += 1
        self.latencies.append(latency)

    @property
    def frames(self) -> int:
        """Frames that reached the sink (all of them, not only the latency window)."""
        return self._frames

    @property
    def wall(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else 0.0

    def latency_ms(self, q: float, recent: int | None = None) -> float:
        """The q-th percentile of frame latency in ms, over the window or its last ``recent`` frames."""
        latencies = self.latencies
        skip = max(0, len(latencies) - recent) if recent else 0
        window = list(itertools.islice(latencies, skip, None))
        return float(np.percentile(window, q) * 1000) if window else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "dropped": self.dropped,
            "wall_s": round(self.wall, 3),
            "fps": round(self.fps, 3),
            "latency_ms": {f"p{q}": round(self.latency_ms(q), 1) for q in (50, 95, 99)},
            "stages": {
                s.name: {"busy_s": round(s.busy, 3), "items": s.items, "fps": round(s.fps, 2)}
                for s in self.stages.values()
            },
        }
