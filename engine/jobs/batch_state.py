"""The state of a batch: the plan (items to skip, units to run), results as they arrive, joins, outcomes.

``BatchState.plan`` skips items whose output is finished with the same model and settings, forgets the
records of the others and turns each into units: the whole item, or the segments of a long video
(finished segments of an earlier run are reused).  An item that cannot be planned (unreadable, damaged,
a folder where its record goes) fails alone; a signal while planning ends the job.  ``finish`` takes each
unit's result in the driver; when a video's last segment arrives its segments are joined into the output
and recorded.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.jobs.batch_plan import (
    WORK_FOLDER,
    Item,
    check_input,
    forget,
    input_identity,
    is_finished,
    items_text,
    new_record,
    settings_digest,
    write_record,
)
from cyclestream.engine.jobs.batch_worker import Unit, UnitResult
from cyclestream.engine.jobs.translate import TranslateOptions
from cyclestream.engine.media.probe import describe, open_input
from cyclestream.engine.media.segments import Segment, join_segments, plan_segments, scan, segment_files
from cyclestream.engine.media.sources import VideoFileSource
from cyclestream.engine.paths import check_inside
from cyclestream.engine.signals import signals_not_swallowed

log = logging.getLogger("cyclestream")

WARMUP_FRAMES = 12  # a segment's stabiliser warms up on this many frames before it (blend keeps 0.8 a frame)


@dataclass
class ItemOutcome:
    item: Item
    status: str  # "done", "skipped" or "failed"
    frames: int = 0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    retried: bool = False
    segments: int = 0  # a long video cut into this many segments (0: translated whole)
    reused: int = 0  # segments finished by an earlier run that stopped before the join
    workers: list[str] = field(default_factory=list)  # host:pid of the workers that translated it



def segments_root(out_dir: Path) -> Path:
    return out_dir / WORK_FOLDER / "segments"


def segment_folder(out_dir: Path, item: Item, *, digest: str, seconds: float, warmup: int) -> Path:
    key = hashlib.sha256(repr((digest, input_identity(item.input), seconds, warmup)).encode()).hexdigest()[:16]
    folder = segments_root(out_dir) / f"{item.rel}.{key}"
    check_inside(folder, out_dir, f"{item.rel}'s segments")  # it and its neighbours get removed
    stale = re.compile(re.escape(Path(item.rel).name) + r"\.[0-9a-f]{16}")
    if folder.parent.is_dir():  # segments of this item from other settings or another input: useless now
        for other in folder.parent.iterdir():
            if other != folder and stale.fullmatch(other.name):
                shutil.rmtree(other, ignore_errors=True)
    return folder


class BatchState:
    """The plan and its progress: units per item, results as they come, joins, outcomes."""

    def __init__(self, out_dir: Path, topts: TranslateOptions, model_sha: str, segment_seconds: float | None) -> None:
        self.out_dir, self.topts, self.model_sha, self.segment_seconds = out_dir, topts, model_sha, segment_seconds
        self.digest = settings_digest(model_sha, topts)
        self.outcomes: dict[Item, ItemOutcome] = {}
        self.units: list[Unit] = []
        self.pending: dict[Item, set[int]] = {}
        self.parts: dict[Item, list[tuple[Unit, Path]]] = {}
        self.records: dict[Item, dict] = {}
        self.frames_done = 0
        self.total_frames = 0
        self.bar: tqdm | None = None
        self.lock = threading.Lock()

    # -- planning
    def plan(self, items: Sequence[Item]) -> None:
        for item in items:
            try:
                with signals_not_swallowed():  # PyAV turns Ctrl-C/SIGTERM in an open into an error of its own
                    if is_finished(self.out_dir, item, self.digest):
                        self.outcomes[item] = ItemOutcome(item, "skipped")
                        continue
                    self.outcomes[item] = ItemOutcome(item, "running")
                    forget(self.out_dir, item)
                    self._plan_item(item)
            except Exception as e:  # one item's failure (unreadable, damaged, its record a folder): it alone
                reason = str(e) if isinstance(e, CycleStreamError) else f"unexpected {type(e).__name__}: {e}"
                self.outcomes[item] = ItemOutcome(item, "failed", reason=reason)
                self.pending.pop(item, None)

    def _add(self, item: Item, output: Path, frames: int, **kwargs: object) -> Unit:
        unit = Unit(len(self.units), item, output, frames, **kwargs)  # type: ignore[arg-type]
        self.units.append(unit)
        self.pending.setdefault(item, set()).add(unit.id)
        self.total_frames += frames
        return unit

    def _plan_item(self, item: Item) -> None:
        check_input(item.input)
        record = new_record(item, self.digest, self.model_sha, self.topts)
        if item.kind == "image":
            self._add(item, item.output, 1, record=record)
            return
        with open_input(item.input) as container:
            info = describe(container)
        seconds = self.segment_seconds
        if seconds and info.duration and info.duration > seconds:
            warmup = WARMUP_FRAMES if self.topts.temporal != "off" else 0
            segments = plan_segments(scan(item.input), seconds, warmup)
            if isinstance(segments, str):
                log.info("%s is translated whole: cannot split it (%s)", item.rel, segments)
            else:
                self._plan_segments(item, segments, record, segment_folder(self.out_dir, item, digest=self.digest,
                                                                            seconds=seconds, warmup=warmup))
                return
        self._add(item, item.output, info.expected_frames, record=record)

    def _plan_segments(self, item: Item, segments: list[Segment], record: dict, folder: Path) -> None:
        look = VideoFileSource(item.input, size=self.topts.run.size)
        try:
            like, turns = look.frame_info, look.quarter_turns
        finally:
            look.close()
        self.records[item] = record
        self.parts[item] = []
        self.outcomes[item].segments = len(segments)
        self.pending[item] = set()
        for segment, path in zip(segments, segment_files(folder, segments), strict=True):
            if path.is_file():  # finished by an earlier run that stopped before the join
                unit = Unit(-1, item, path, segment.frames, segment=segment)
                self.parts[item].append((unit, path))
                self.frames_done += segment.frames
                self.total_frames += segment.frames
                self.outcomes[item].frames += segment.frames
                self.outcomes[item].reused += 1
                continue
            unit = self._add(item, path, segment.frames, segment=segment, like=like, quarter_turns=turns)
            self.parts[item].append((unit, path))

    # -- results
    def finish(self, unit: Unit, result: UnitResult) -> None:
        item = unit.item
        outcome = self.outcomes[item]
        self.pending[item].discard(unit.id)
        outcome.retried |= result.retried
        if result.worker:
            outcome.workers.append(result.worker)
        outcome.warnings += result.warnings
        with self.lock:
            self.frames_done += unit.frames
        if outcome.status == "failed":
            return
        if not result.ok:
            where = f"{unit.segment.describe()}: " if unit.segment else ""
            outcome.status, outcome.reason = "failed", where + result.error
            self.advance(0)
            return
        outcome.frames += result.frames
        if not self.pending[item]:
            self._complete(item)
        self.advance(0)

    def complete_ready(self) -> None:
        """Items planned with nothing left to run (every segment finished by an earlier run)."""
        for item, pending in self.pending.items():
            if not pending and self.outcomes[item].status == "running":
                self._complete(item)

    def _complete(self, item: Item) -> None:
        outcome = self.outcomes[item]
        if item not in self.parts:
            outcome.status = "done"
            return
        parts = self.parts[item]
        try:
            with atomic_output(item.output) as tmp:
                frames = join_segments(item.input, [(u.segment, p) for u, p in parts], tmp, str(item.output))
            write_record(self.out_dir, item.rel, output=item.output, record=self.records[item], frames=frames)
        except Exception as e:  # the segments stay for a rerun
            reason = str(e) if isinstance(e, CycleStreamError) else f"unexpected {type(e).__name__}: {e}"
            outcome.status, outcome.reason = "failed", f"joining its {len(parts)} segments: {reason}"
            return
        outcome.status = "done"
        folder, root = parts[0][1].parent, segments_root(self.out_dir)
        try:
            check_inside(folder, self.out_dir, f"{item.rel}'s segments")
        except CycleStreamError as e:  # a link put there since the plan: the output stays, the segments too
            log.warning("%s; its segments are left in place", e)
            return
        shutil.rmtree(folder, ignore_errors=True)
        for parent in folder.parents:  # the empty folders above it, up to and including segments/
            if not parent.is_relative_to(root):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    # -- progress
    def advance(self, running: int) -> None:
        if self.bar is None:
            return
        with self.lock:
            target = min(self.total_frames, self.frames_done + running)
            if target > self.bar.n:
                self.bar.update(target - self.bar.n)
            finished = sum(o.status in ("done", "failed", "skipped") for o in self.outcomes.values())
            failed = sum(o.status == "failed" for o in self.outcomes.values())
            # refresh=False: the bar redraws at its own interval (every 15 s in a log file, not every call)
            self.bar.set_postfix_str(f"items {finished}/{len(self.outcomes)}" + (f", {failed} failed" * bool(failed)),
                                     refresh=False)

    def interrupted(self, e: KeyboardInterrupt) -> None:
        done = len([o for o in self.outcomes.values() if o.status == "done"])
        left = len([o for o in self.outcomes.values() if o.status == "running"])
        e.add_note(f"{items_text(done)} finished before stopping, each complete and recorded; {left} not finished "
                   "(no partial output left; rerun the same command to do them)")
