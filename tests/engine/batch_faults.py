"""Worker hooks for the batch tests (``run_batch(..., on_unit=...)``): faults injected where a unit starts.

They are plain picklable objects of an importable module, so Ray sends them to its workers like any other
argument (Ray puts the driver's working folder, the repository root, on its workers' path)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DieInside:
    """The worker process ends (``os._exit(70)``) once ``frames`` frames of the first unit whose name
    contains ``name`` have been read, unless ``marker`` exists (it is created first, so the retried unit
    runs through)."""

    name: str
    frames: int
    marker: Path

    def __call__(self, worker: Any, unit: Any) -> None:
        if self.name not in unit.name or self.marker.exists():
            return
        self.marker.write_text(f"{worker.name} {unit.name}\n")

        def die() -> None:
            while worker.progress() < self.frames:
                time.sleep(0.002)
            os._exit(70)

        threading.Thread(target=die, name="test-worker-dies", daemon=True).start()


@dataclass(frozen=True)
class PauseAtFirst:
    """The first unit waits, once ``started`` is written, until ``go`` exists (a minute at most): the job
    is caught with its workers up."""

    started: Path
    go: Path

    def __call__(self, worker: Any, unit: Any) -> None:
        if self.started.exists():
            return
        self.started.write_text(f"{os.getpid()}\n")
        deadline = time.monotonic() + 60
        while not self.go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
