"""One batch worker: loads the model once, keeps its prepared backends, translates unit after unit.

A *unit* is a whole item (a video or an image) or one segment of a long video.  The same class runs
in-process (``--ray`` absent) and as a Ray actor (``batch_ray.py``), through the single-file code path:
``translate_video`` / ``translate_images`` with this worker's ``prepare`` (backends prepared once per
frame size and kept), so outputs are written atomically and every single-file guarantee holds.  Only a
regular file is opened (checked again here: the plan may be old).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cyclestream.engine.backends import Backend
from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.jobs.batch_plan import Item, check_input, write_record
from cyclestream.engine.jobs.translate import TranslateOptions, translate_images, translate_video
from cyclestream.engine.media.probe import VideoInfo
from cyclestream.engine.media.segments import Segment, SegmentSource
from cyclestream.engine.media.sources import VideoFileSource
from cyclestream.engine.paths import file_sha256

log = logging.getLogger("cyclestream")

@dataclass(frozen=True)
class Unit:
    id: int
    item: Item
    output: Path  # the item's output, or this segment's file
    frames: int  # expected, for the progress bar
    record: dict[str, Any] | None = None  # whole items: the record written once the output is in place
    segment: Segment | None = None
    like: VideoInfo | None = None  # a segment: the whole video's frame info ...
    quarter_turns: int = 0  # ... and orientation

    @property
    def name(self) -> str:
        return self.item.rel + (f" {self.segment.describe()}" if self.segment else "")


# Called in the worker as each unit starts, its source open (a video's frames are counted by ``progress``):
# where tests make a worker die mid-unit.  Under Ray it is pickled to the workers with the other arguments.
UnitHook = Callable[["BatchWorker", Unit], None]


@dataclass
class UnitResult:
    unit_id: int
    ok: bool
    frames: int = 0
    seconds: float = 0.0
    backend: str = ""
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    retried: bool = False  # the first unit of a worker restarted after it died
    worker: str = ""


class BatchWorker:
    def __init__(
        self,
        model_path: str,
        model_sha256: str,
        options: TranslateOptions,
        out_dir: str,
        on_unit: UnitHook | None = None,
        model: LoadedModel | None = None,
    ) -> None:
        if model is None:
            if file_sha256(Path(model_path)) != model_sha256:
                raise CycleStreamError(f"{model_path} on {socket.gethostname()} is not the model the batch "
                                       "started with (a different file at the same path)")
            model = load_model(model_path)
        self.model = model
        self.options = options
        self.out_dir = Path(out_dir)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.restarted = False
        self._backends: dict[tuple[RunOptions, int, int], Backend] = {}
        self._source: VideoFileSource | None = None
        self._on_unit = on_unit

    def ready(self) -> str:
        """host:pid, once the model is loaded."""
        return self.name

    def prepare(self, model: LoadedModel, run: RunOptions, height: int, width: int) -> Backend:
        key = (run, height, width)
        if key not in self._backends:
            self._backends[key] = prepare_backend(model, run, height, width)
        return self._backends[key]

    def progress(self) -> int:
        """Frames of the current unit read so far (0 between units)."""
        source = self._source
        if source is None:
            return 0
        return source.kept if isinstance(source, SegmentSource) else source.decoded

    def _started(self, unit: Unit) -> None:
        if self._on_unit is not None:
            self._on_unit(self, unit)

    def _translate(self, unit: Unit) -> tuple[int, str, list[str]]:
        item = unit.item
        check_input(item.input)
        if item.kind == "image":
            self._started(unit)
            report = translate_images(item.input, unit.output, self.model, self.options, prepare=self.prepare)
            return report.frames, report.backend, report.warnings
        if unit.segment is not None:
            assert unit.like is not None
            source: VideoFileSource = SegmentSource(item.input, unit.segment, unit.like, unit.quarter_turns,
                                                    self.options.deinterlace)  # fmt: skip
        else:
            source = VideoFileSource(item.input, size=self.options.run.size, deinterlace=self.options.deinterlace)
        self._source = source
        self._started(unit)
        report = translate_video(item.input, unit.output, self.model, self.options, source=source,
                                 prepare=self.prepare)
        frames = source.kept if isinstance(source, SegmentSource) else report.frames
        return frames, report.backend, report.warnings

    def run(self, unit: Unit) -> UnitResult:
        """Translate one unit; a failure is returned (with its one-line reason), not raised, so that only a
        worker that dies gets its unit retried.  Ctrl-C (in-process) propagates."""
        retried, self.restarted = self.restarted, False
        t0 = time.perf_counter()
        try:
            frames, backend, warnings = self._translate(unit)
            if unit.record is not None:
                write_record(self.out_dir, unit.item.rel, output=unit.output, record=unit.record, frames=frames)
        except CycleStreamError as e:
            return UnitResult(unit.id, False, error=str(e), retried=retried, worker=self.name)
        except Exception as e:  # a bug or an unforeseen library error: one line, the batch goes on
            log.debug("unit %s failed", unit.name, exc_info=True)
            return UnitResult(unit.id, False, error=f"unexpected {type(e).__name__}: {e}", retried=retried,
                              worker=self.name)
        finally:
            self._source = None
        return UnitResult(unit.id, True, frames, time.perf_counter() - t0, backend, warnings, retried=retried,
                          worker=self.name)

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
