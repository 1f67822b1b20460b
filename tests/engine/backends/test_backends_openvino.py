"""The OpenVINO backend against eager, fp32 and bf16, on a tiny random generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cyclestream.engine.backends import FrameShape
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError
from cyclestream.engine.jobs.verify import (
    TOLERANCE,
    eager_output,
    model_input,
    random_model,
    relative_l2,
    sample_frames,
)

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'cyclestream[openvino]')")
pytest.importorskip("onnxscript", reason="the ONNX export needs onnxscript")

from tests.engine.conftest import EXPORT_SPEC as SPEC


@pytest.fixture(scope="module")
def model(export_model: LoadedModel) -> LoadedModel:
    return export_model


def openvino(model: LoadedModel, cache: Path, shape: FrameShape, precision: str) -> object:
    from cyclestream.engine.backends.openvino import OpenVINOBackend

    backend = OpenVINOBackend(cache_dir=cache)
    backend.prepare(model, shape, precision)  # type: ignore[arg-type]
    return backend


def test_fp32_matches_eager_across_sizes_and_batches(model: LoadedModel, backend_cache: Path) -> None:
    backend = openvino(model, backend_cache, FrameShape(2, 48, 64), "fp32")
    for n, h, w in [(2, 48, 64), (1, 48, 64), (1, 30, 38)]:  # prepared shape, short last batch, other size
        frames = sample_frames(n, h, w)
        assert backend.run(frames).shape == (n, h, w, 3)
        x = model_input(model, frames)
        assert relative_l2(backend.infer(x), eager_output(model, x)) < TOLERANCE["fp32"]


def test_bf16_matches_eager_within_bf16_tolerance(model: LoadedModel, backend_cache: Path) -> None:
    from cyclestream.engine.backends.openvino import cpu_capabilities

    if "BF16" not in cpu_capabilities():
        pytest.skip("this CPU has no bf16 instructions (AVX-512-BF16 or AMX)")
    backend = openvino(model, backend_cache, FrameShape(1, 64, 64), "bf16")
    x = model_input(model, sample_frames(1, 64, 64))
    error = relative_l2(backend.infer(x), eager_output(model, x))
    assert 1e-5 < error < TOLERANCE["bf16"]  # really ran in bf16, and close enough


def test_fp16_is_refused_without_fp16_hardware(model: LoadedModel, backend_cache: Path) -> None:
    from cyclestream.engine.backends.openvino import cpu_capabilities

    if "FP16" in cpu_capabilities():
        pytest.skip("this CPU has fast fp16")
    with pytest.raises(BackendError, match="no fast fp16"):
        openvino(model, backend_cache, FrameShape(1, 32, 32), "fp16")


def test_uint8_round_trip_equals_eager_up_to_rounding(model: LoadedModel, backend_cache: Path) -> None:
    from cyclestream.engine.backends import create_backend

    frames = sample_frames(1, 40, 40)
    eager = create_backend("eager")
    eager.prepare(random_model(SPEC), FrameShape(1, 40, 40), "fp32")
    out = openvino(model, backend_cache, FrameShape(1, 40, 40), "fp32").run(frames)
    assert (out.int() - eager.run(frames).int()).abs().max() <= 1
    assert out.dtype == torch.uint8
