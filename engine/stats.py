"""Timings shared by translate, stream and bench: per-stage busy time, throughput, latency percentiles."""

from __future__ import annotations

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

    def add(self, seconds: float, items: int = 1) -> None:
        self.busy += seconds
        self.items += items

    @property
    def fps(self) -> float:
        return self.items / self.busy if self.busy > 0 else 0.0


@dataclass
class PipelineStats:
    stages: dict[str, StageTimer] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds, source → sink, per frame
    dropped: int = 0
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stage(self, name: str) -> StageTimer:
        with self._lock:
            return self.stages.setdefault(name, StageTimer(name))

    @property
    def frames(self) -> int:
        return len(self.latencies)

    @property
    def wall(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else 0.0

    def latency_ms(self, q: float, recent: int | None = None) -> float:
        """The q-th percentile of frame latency in ms, over all frames or the last ``recent``."""
        window = self.latencies[-recent:] if recent else self.latencies
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
