"""``--backend auto``: the choice rule, and fallbacks that always say why."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from cyclestream.engine.backends import Backend, FrameShape, create_backend
from cyclestream.engine.backends.auto import AutoBackend, plan
from cyclestream.engine.errors import BackendError
from cyclestream.engine.jobs.verify import random_model, sample_frames
from cyclestream.engine.models import GeneratorSpec

TINY = GeneratorSpec(ngf=4, n_blocks=1)


def have(*modules: str):
    return lambda name: name in modules


def test_plan_on_a_gpu_prefers_tensorrt() -> None:
    assert plan("cuda", "fp16", have("tensorrt")) == ["tensorrt", "eager"]
    assert plan("cuda:1", "fp32", have("tensorrt")) == ["tensorrt", "eager"]
    assert plan("cuda", "fp16", have()) == ["eager"]
    assert plan("cuda", "bf16", have("tensorrt")) == ["eager"]  # engines are built fp32/fp16


def test_plan_on_the_cpu() -> None:
    every = have("openvino", "onnxruntime", "tensorrt")
    assert plan("cpu", "bf16", every, bf16_cpu=True) == ["openvino", "eager"]
    assert plan("cpu", "bf16", every, bf16_cpu=False) == ["eager"]
    assert plan("cpu", "bf16", have("onnxruntime"), bf16_cpu=True) == ["eager"]
    assert plan("cpu", "fp32", every, bf16_cpu=True) == ["eager"]  # no export for a 1.1-1.5x gain
    assert plan("cpu", "fp16", every) == ["eager"]  # eager says why fp16 on a CPU is refused


def test_plan_for_int8_uses_the_backends_of_the_quantised_graph() -> None:
    assert plan("cpu", "int8", have("openvino", "onnxruntime")) == ["openvino", "onnxruntime"]
    assert plan("cpu", "int8", have("onnxruntime")) == ["onnxruntime"]
    assert plan("cpu", "int8", have("openvino")) == []  # the quantiser is ONNX Runtime's
    assert plan("cpu", "auto", have("openvino", "onnxruntime")) == ["eager"]  # auto without measuring: fp32


def test_int8_without_the_quantiser_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import cyclestream.engine.backends.auto as auto

    monkeypatch.setattr(auto, "plan", lambda *args, **kwargs: [])  # what plan says without ONNX Runtime
    backend = AutoBackend("cpu")
    backend.tune = False
    with pytest.raises(BackendError, match=r"int8 needs ONNX Runtime \(pip install 'cyclestream\[onnx\]'\)"):
        backend.prepare(random_model(TINY), FrameShape(1, 16, 16), "int8")


class Broken(Backend):
    name = "broken"

    def prepare(self, model: object, shape: FrameShape, precision: str) -> None:  # type: ignore[override]
        raise BackendError("simulated build failure")

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("never prepared")


def test_a_failing_backend_falls_back_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import cyclestream.engine.backends.auto as auto

    monkeypatch.setattr(auto, "plan", lambda *args, **kwargs: ["openvino", "eager"])
    made: list[str] = []

    def factory(name: str, device: str) -> Backend:
        made.append(name)
        return Broken() if name == "openvino" else create_backend(name, device)

    backend = AutoBackend("cpu", factory)
    with caplog.at_level(logging.INFO, logger="cyclestream"):
        backend.prepare(random_model(TINY), FrameShape(1, 16, 16), "fp32")
    assert made == ["openvino", "eager"]
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "openvino failed (simulated build failure); falling back to eager" in warning.getMessage()
    assert "auto chose eager" in caplog.text
    assert backend.describe().startswith("eager")
    assert backend.run(sample_frames(1, 16, 16)).shape == (1, 16, 16, 3)


def test_when_nothing_works_the_error_lists_every_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import cyclestream.engine.backends.auto as auto

    monkeypatch.setattr(auto, "plan", lambda *args, **kwargs: ["openvino", "eager"])
    backend = AutoBackend("cpu", lambda name, device: Broken())
    with pytest.raises(BackendError, match=r"openvino: simulated build failure; eager: simulated build failure"):
        backend.prepare(random_model(TINY), FrameShape(1, 16, 16), "fp32")


@pytest.mark.slow
def test_auto_resolves_to_a_working_backend_here(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from cyclestream.engine.backends.cache import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    backend = create_backend("auto", "cpu")
    backend.prepare(random_model(TINY), FrameShape(2, 24, 40), "bf16")
    chosen = backend.describe().split(" ")[0]
    assert chosen == plan("cpu", "bf16")[0]
    out = backend.run(sample_frames(1, 24, 40))  # the short last batch
    assert out.shape == (1, 24, 40, 3) and out.dtype == torch.uint8


def test_unknown_backend_names_are_listed() -> None:
    with pytest.raises(BackendError, match="onnxruntime, openvino, tensorrt"):
        create_backend("fastest")


@pytest.mark.slow
def test_importing_the_backends_imports_no_backend_library() -> None:
    code = (
        "import sys, cyclestream.cli, cyclestream.engine.jobs.translate, cyclestream.engine.backends.auto, "
        "cyclestream.engine.jobs.compile\n"
        "heavy = ('onnxruntime', 'openvino', 'tensorrt', 'torch_tensorrt', 'triton', 'onnx', 'onnxscript')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_auto_forwards_the_kernels_option_to_eager() -> None:
    from cyclestream.engine.backends.eager import EagerBackend

    backend = create_backend("auto", "cpu", kernels="reference")
    backend.prepare(random_model(TINY), FrameShape(1, 16, 16), "fp32")
    chosen = backend.chosen  # type: ignore[attr-defined]
    assert isinstance(chosen, EagerBackend) and chosen.kernels == "reference"
