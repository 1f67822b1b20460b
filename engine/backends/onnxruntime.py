"""ONNX Runtime on the CPU: the generator exported once to ONNX (cached), run by the CPU provider.

The graph has dynamic batch, height and width, so the last, shorter batch of a video and frames of
another size run on the same session.  Sessions use every graph optimization and as many intra-op
threads as PyTorch uses (``torch.get_num_threads()``), one inter-op thread.  Pre- and
post-processing are the shared uint8 ↔ [-1, 1] functions of engine/backends/tensors.py.

Precision is fp32, or int8 (``--precision int8``: the graph quantised by engine/backends/quantize.py, run by
the provider's int8 kernels); the CPU provider has no fast bf16 or fp16 convolutions (OpenVINO does bf16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cyclestream.engine.backends.base import Backend, FrameShape, Precision
from cyclestream.engine.backends.export import INPUT_NAME, open_cached_onnx
from cyclestream.engine.backends.quantize import Calibrated, open_int8
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendError(
            "the onnxruntime backend needs ONNX Runtime: pip install 'cyclestream[onnx]' "
            "(onnx, onnxruntime, onnxscript)"
        ) from None
    return onnxruntime


def conditioning_names(session: Any) -> list[str]:
    """The graph's inputs after the image: the generator's conditioning (label, z), in order."""
    return [i.name for i in session.get_inputs()[1:]]


def make_session(path: Path, threads: int | None = None) -> Any:
    """A CPU InferenceSession for the graph at ``path`` with all graph optimizations."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeBackend(Calibrated, Backend):
    name = "onnxruntime"
    input_channels_last = False  # the engine's input binding is contiguous NCHW

    def __init__(self, device: str = "cpu", cache_dir: Path | None = None, threads: int | None = None) -> None:
        if device != "cpu":
            raise BackendError("the onnxruntime backend runs on the CPU; on a GPU use --backend tensorrt")
        import_onnxruntime()
        self.cache_dir = cache_dir
        self.threads = threads
        self._session: Any = None

    def prepare(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        if precision not in ("fp32", "int8"):
            raise BackendError(
                f"the onnxruntime backend has no {precision} (it runs fp32 only, or int8 quantised); "
                "for bf16 on the CPU use --backend openvino or eager"
            )
        self.precision = precision
        if precision == "int8":  # the quantised graph (engine/backends/quantize.py)
            self._session = open_int8(model, lambda path: make_session(path, self.threads), self.calibration, shape,
                                      self.cache_dir)
        else:
            self._session = open_cached_onnx(model, lambda path: make_session(path, self.threads), precision="fp32",
                                             cache_dir=self.cache_dir)
        self.ready(model, shape)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        assert self._session is not None, "prepare() first"
        feeds = {INPUT_NAME: x.contiguous().numpy()}
        feeds.update(zip(conditioning_names(self._session), (c.numpy() for c in self.conditioning_batch(x)),
                         strict=True))
        (y,) = self._session.run(None, feeds)
        return torch.from_numpy(y)

    def describe(self) -> str:
        return f"onnxruntime (cpu, {self.precision})"

    def close(self) -> None:
        super().close()
        self._session = None
