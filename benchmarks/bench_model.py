"""pytest-benchmark suite: the generator alone, per precision and frame size (eager backend).

``python -m pytest benchmarks/bench_model.py --benchmark-only``; the official resnet_9blocks generator
with random weights (speed does not depend on them).  ``CYCLESTREAM_BENCH_SIZES=256,512,720p`` widens
the sizes (default 256).  ``cyclestream bench model`` measures the same with more backends, the
baseline ratio, errors and the roofline.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from cyclestream.engine.backends import FrameShape, create_backend
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.jobs.bench import _frames
from cyclestream.engine.jobs.bench_options import parse_bench_size
from cyclestream.engine.models import GeneratorSpec, build_generator

if TYPE_CHECKING:
    from pytest_benchmark.fixture import BenchmarkFixture

SIZES = [parse_bench_size(s) for s in os.environ.get("CYCLESTREAM_BENCH_SIZES", "256").split(",")]
SPEC = GeneratorSpec()


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return LoadedModel(build_generator(SPEC).eval(), SPEC, os.devnull, "random")  # type: ignore[arg-type]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_model(benchmark: BenchmarkFixture, model: LoadedModel, precision: str, size: tuple[int, int]) -> None:
    width, height = size
    backend = create_backend("eager", "cpu")
    backend.prepare(model, FrameShape(1, height, width), precision)  # type: ignore[arg-type]
    frames = _frames(1, width, height)
    out = benchmark.pedantic(backend.run, args=(frames,), rounds=5, warmup_rounds=1)
    assert out.shape == frames.shape
    benchmark.extra_info["images_per_s"] = 1 / benchmark.stats.stats.median
