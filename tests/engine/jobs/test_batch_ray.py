"""`cyclestream batch` on a local Ray instance (2 CPUs, shared by every test here): a folder on two workers,
a long clip in segments, a worker killed mid-item, a rerun, Ctrl-C."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cyclestream.engine.jobs.batch import BatchFailed, BatchOptions, run_batch
from cyclestream.engine.jobs.batch_plan import record_path
from cyclestream.engine.jobs.batch_ray import connect
from cyclestream.engine.jobs.batch_state import BatchState
from cyclestream.engine.jobs.translate import TranslateOptions, translate
from cyclestream.engine.media.encode_options import EncodeOptions
from tests.engine.batch_faults import DieInside
from tests.engine.jobs.test_batch import _library, check_library_outputs
from tests.engine.jobs.test_batch_clips import write_camera_clip
from tests.engine.jobs.test_batch_segments import NEAR_LOSSLESS, _check_same_as_single_file
from tests.engine.media_checks import video_times

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'cyclestream[ray]')")

pytestmark = pytest.mark.slow
FAST = EncodeOptions(preset="ultrafast")
ON_RAY = BatchOptions(translate=TranslateOptions(encode=FAST, progress=False), ray="local", workers=2, progress=False)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One Ray instance for the module (starting one takes seconds), on loopback as ``--ray local`` starts
    it; run_batch uses the connection."""
    with connect("local", 2):
        yield


def _partials(out: Path) -> list[Path]:
    return list(out.rglob("*partial*"))


def test_folder_on_two_workers_then_rerun_skips(tiny_model: Path, tmp_path: Path) -> None:
    made = _library(tmp_path / "lib")  # CFR + audio, VFR + audio, a nested clip, an image
    out = tmp_path / "out"
    report = run_batch([tmp_path / "lib"], out, tiny_model, ON_RAY)
    assert [o.status for o in report.outcomes] == ["done"] * 4 and "2 workers" in report.where
    check_library_outputs(made, out)
    # which worker takes what is Ray's scheduling (one may take everything on a busy machine): not asserted
    assert all(o.workers for o in report.outcomes)

    again = run_batch([tmp_path / "lib"], out, tiny_model, ON_RAY)
    assert [o.status for o in again.outcomes] == ["skipped"] * 4


def test_long_clip_in_segments_on_two_workers_is_joined_exactly(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "film.mp4"
    write_camera_clip(src, seconds=4.0)
    options = dataclasses.replace(ON_RAY, segment_seconds=1.0,
                                  translate=TranslateOptions(encode=NEAR_LOSSLESS, temporal="off", progress=False))
    report = run_batch([src], tmp_path / "out", tiny_model, options)
    (outcome,) = report.outcomes
    assert outcome.status == "done" and outcome.segments >= 3 and len(outcome.workers) == outcome.segments
    whole = tmp_path / "whole.mp4"
    translate(src, whole, tiny_model, TranslateOptions(encode=NEAR_LOSSLESS, temporal="off", progress=False))
    _check_same_as_single_file(src, tmp_path / "out" / "film.mp4", whole)
    assert not _partials(tmp_path / "out")


@pytest.mark.parametrize("retries", [2, 0])
def test_a_worker_killed_mid_item_has_its_item_retried(tiny_model: Path, tmp_path: Path, retries: int) -> None:
    for name in ("a.mp4", "victim.mp4"):
        write_camera_clip(tmp_path / "lib" / name, seconds=2.0)
    marker = tmp_path / "killed"
    dies = DieInside("victim", 20, marker)  # the worker dies 20 frames into victim.mp4
    out = tmp_path / "out"
    options = dataclasses.replace(ON_RAY, retries=retries)
    if retries:
        report = run_batch([tmp_path / "lib"], out, tiny_model, options, on_unit=dies)
        victim = next(o for o in report.outcomes if o.item.rel == "victim.mp4")
        assert victim.status == "done" and victim.retried
        assert video_times(out / "victim.mp4") == pytest.approx(video_times(tmp_path / "lib" / "victim.mp4"), abs=0.002)
        assert record_path(out, "victim.mp4").is_file()
    else:  # no retries: the item fails with a reason, the other is written, nothing half-written is left
        with pytest.raises(BatchFailed) as caught:
            run_batch([tmp_path / "lib"], out, tiny_model, options, on_unit=dies)
        report = caught.value.report
        (victim,) = report.of("failed")
        assert victim.item.rel == "victim.mp4" and "worker died" in victim.reason
        assert not (out / "victim.mp4").exists()
    assert marker.exists()  # the worker really died
    assert (out / "a.mp4").is_file()
    assert not _partials(out)  # the dead worker's partial file was removed


def test_ctrl_c_kills_the_workers_and_leaves_no_partial_output(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write_camera_clip(tmp_path / "lib" / name, seconds=2.0)
    finish = BatchState.finish

    def interrupt_after_first(self: BatchState, unit: object, result: object) -> None:
        finish(self, unit, result)  # type: ignore[arg-type]
        raise KeyboardInterrupt  # Ctrl-C while the other worker is writing

    monkeypatch.setattr(BatchState, "finish", interrupt_after_first)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt) as caught:
        run_batch([tmp_path / "lib"], out, tiny_model, ON_RAY)
    assert "1 item finished before stopping" in " ".join(caught.value.__notes__)
    assert len(list(out.glob("*.mp4"))) == 1 and not _partials(out)
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == pytest.approx(2)  # the workers are gone
