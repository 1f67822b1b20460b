"""ONNX export and the ONNX Runtime backend against eager, on tiny random generators."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclestream.cli import main
from cyclestream.engine.backends import FrameShape, create_backend
from cyclestream.engine.backends.cache import CACHE_ENV
from cyclestream.engine.backends.export import cached_onnx, count_instance_norms, export_onnx, onnx_op_counts
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.errors import BackendError
from cyclestream.engine.jobs.verify import (
    TOLERANCE,
    eager_output,
    model_input,
    random_model,
    relative_l2,
    sample_frames,
)
from cyclestream.engine.models import GeneratorSpec

pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'cyclestream[onnx]')")
pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")

from tests.engine.conftest import EXPORT_SPEC as SPEC


@pytest.fixture(scope="module")
def model(export_model: LoadedModel) -> LoadedModel:
    return export_model


def ort_backend(model: LoadedModel, cache: Path, shape: FrameShape) -> object:
    from cyclestream.engine.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(cache_dir=cache)
    backend.prepare(model, shape, "fp32")
    return backend


def test_dynamo_export_keeps_one_instance_norm_op_per_norm(model: LoadedModel, backend_cache: Path) -> None:
    counts = onnx_op_counts(cached_onnx(model, "fp32", backend_cache))
    assert counts["InstanceNormalization"] == count_instance_norms(model.generator) == 9
    assert not {"ReduceMean", "BatchNormalization"} & set(counts)  # not decomposed


def test_torchscript_exporter_works_too(model: LoadedModel, tmp_path: Path) -> None:
    report = export_onnx(model, tmp_path / "ts.onnx", exporter="torchscript")
    assert report.exporter == "torchscript"
    assert report.instance_norms == 9


@pytest.mark.slow
def test_fp16_export_casts_around_fp32_instance_norms(model: LoadedModel, tmp_path: Path) -> None:
    report = export_onnx(model, tmp_path / "half.onnx", precision="fp16")
    assert report.instance_norms == 9
    assert report.op_counts["Cast"] >= 2 * 9
    import onnxruntime as ort

    x = model_input(model, sample_frames(1, 32, 32))
    (y,) = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.half().numpy()}
    )
    assert relative_l2(torch.from_numpy(y).float(), eager_output(model, x)) < TOLERANCE["fp16"]


def test_onnxruntime_matches_eager_fp32(model: LoadedModel, backend_cache: Path) -> None:
    backend = ort_backend(model, backend_cache, FrameShape(2, 48, 64))
    frames = sample_frames(2, 48, 64)
    x = model_input(model, frames)
    assert relative_l2(backend.infer(x), eager_output(model, x)) < TOLERANCE["fp32"]
    eager = create_backend("eager")
    eager.prepare(random_model(SPEC), FrameShape(2, 48, 64), "fp32")
    diff = backend.run(frames).int() - eager.run(frames).int()
    assert diff.abs().max() <= 1


def test_one_session_serves_other_sizes_and_short_batches(model: LoadedModel, backend_cache: Path) -> None:
    backend = ort_backend(model, backend_cache, FrameShape(3, 32, 32))
    session = backend._session
    for n, h, w in [(1, 32, 32), (2, 40, 56), (1, 30, 38)]:
        frames = sample_frames(n, h, w)
        out = backend.run(frames)
        assert out.shape == (n, h, w, 3) and out.dtype == torch.uint8
        x = model_input(model, frames)
        assert relative_l2(backend.infer(x), eager_output(model, x)) < TOLERANCE["fp32"]
    assert backend._session is session


@pytest.mark.slow
def test_unet_exports_and_runs(backend_cache: Path) -> None:
    unet = random_model(GeneratorSpec(kind="unet", ngf=4, n_blocks=5))
    backend = ort_backend(unet, backend_cache, FrameShape(1, 32, 32))
    x = model_input(unet, sample_frames(1, 40, 24))
    assert relative_l2(backend.infer(x), eager_output(unet, x)) < TOLERANCE["fp32"]


def test_bf16_is_refused_with_a_reason(model: LoadedModel, backend_cache: Path) -> None:
    from cyclestream.engine.backends.onnxruntime import OnnxRuntimeBackend

    with pytest.raises(BackendError, match="fp32 only"):
        OnnxRuntimeBackend(cache_dir=backend_cache).prepare(model, FrameShape(1, 32, 32), "bf16")


@pytest.mark.slow
def test_compile_onnx_then_translate_reuses_the_graph(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    out = tmp_path / "tiny.onnx"
    assert main(["-q", "compile", str(tiny_model), "--target", "onnx", "--shape", "1x3x48x64", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "InstanceNormalization" in printed and "relative L2 error" in printed
    norms = count_instance_norms(load_model(tiny_model).generator)
    assert onnx_op_counts(out)["InstanceNormalization"] == norms
    plugin_graph = tmp_path / "tiny.plugins.onnx"  # for trtexec with the native plugin library
    assert f"plugin graph ({norms} fused norms)" in printed and str(plugin_graph) in printed
    assert onnx_op_counts(plugin_graph)["CycleStreamInstanceNorm"] == norms
    # translate must take the compiled graph from the cache, not export again
    import cyclestream.engine.backends.export as export

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again instead of using the compiled graph")

    monkeypatch.setattr(export, "export_onnx", no_export)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    for backend in ("onnxruntime", "eager"):
        args = ["-q", "translate", str(tmp_path / "in.png"), str(tmp_path / f"{backend}.png")]
        assert main([*args, "--model", str(tiny_model), "--backend", backend]) == 0
    ort_img = np.asarray(Image.open(tmp_path / "onnxruntime.png")).astype(int)
    eager_img = np.asarray(Image.open(tmp_path / "eager.png")).astype(int)
    assert ort_img.shape == (30, 44, 3)
    assert np.abs(ort_img - eager_img).max() <= 1


def test_compile_rejects_what_it_cannot_do(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(tiny_model), "--target", "onnx", "--precision", "bf16"]) == 2
    assert "fp32 or fp16" in capsys.readouterr().err
    assert main(["compile", str(tiny_model), "--target", "onnx", "--shape", "1x4x64x64"]) == 2
    assert "channels" in capsys.readouterr().err


def test_export_failure_of_dynamo_falls_back_with_a_warning(
    model: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import cyclestream.engine.backends.export as export

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated dynamo failure")

    monkeypatch.setattr(export, "_export_dynamo", broken)
    with caplog.at_level(logging.WARNING, logger="cyclestream"):
        report = export_onnx(model, tmp_path / "fallback.onnx")
    assert report.exporter == "torchscript" and report.instance_norms == 9
    assert "simulated dynamo failure" in caplog.text
