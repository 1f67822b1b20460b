"""OpenVINO on the CPU: the cached ONNX graph compiled by OpenVINO's CPU plugin, fp32, bf16 or int8.

bf16 runs on CPUs that OpenVINO reports as BF16-capable (AVX-512-BF16 or AMX); the plugin keeps
normalization statistics in fp32.  int8 runs the graph quantised by engine/backends/quantize.py.  The
model stays dynamic in batch, height and width, so one compiled model serves the last, shorter batch and
frames of another size.  Compiled blobs are cached
by OpenVINO itself under the cyclestream cache (``openvino/``), which makes later starts faster; each
blob gets a record of its bytes once OpenVINO has written it, and one that no longer matches is
removed before OpenVINO could read it (engine/backends/cache.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cyclestream.engine.backends.base import Backend, FrameShape, Precision
from cyclestream.engine.backends.cache import (
    CACHE_FORMAT,
    checked_folder,
    default_cache_dir,
    folder_lock,
    record_folder,
)
from cyclestream.engine.backends.export import open_cached_onnx
from cyclestream.engine.backends.quantize import Calibrated, open_int8
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError, first_line

_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}  # int8: the quantised graph's float parts
_CAPABILITY = {"bf16": "BF16", "fp16": "FP16", "int8": "INT8"}


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise BackendError("the openvino backend needs OpenVINO: pip install 'cyclestream[openvino]'") from None
    return openvino


def cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin says this CPU can do (e.g. FP32, BF16, INT8); [] without OpenVINO."""
    try:
        ov = import_openvino()
        return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:
        return []


class OpenVINOBackend(Calibrated, Backend):
    name = "openvino"
    input_channels_last = False  # the engine's input binding is contiguous NCHW

    def __init__(self, device: str = "cpu", cache_dir: Path | None = None, threads: int | None = None) -> None:
        if device != "cpu":
            raise BackendError("the openvino backend runs on the CPU; on an NVIDIA GPU use --backend tensorrt")
        self._ov = import_openvino()
        self.cache_dir = cache_dir or default_cache_dir()
        self.threads = threads
        self._request: Any = None

    def prepare(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        core = self._ov.Core()
        if precision in _CAPABILITY:
            caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            if _CAPABILITY[precision] not in caps:
                raise BackendError(
                    f"this CPU has no fast {precision} (OpenVINO reports {', '.join(caps)}); use --precision fp32"
                )
        self.precision = precision
        blobs = self.cache_dir / "openvino"
        config = {
            "INFERENCE_PRECISION_HINT": _HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self.threads or torch.get_num_threads(),
            "CACHE_DIR": str(blobs),
        }

        def compile_graph(onnx_path: Path) -> Any:
            # OpenVINO reads a compiled blob it finds in CACHE_DIR without checking its bytes: each blob is
            # checked against the record made after OpenVINO wrote it (a changed one is removed and compiled again).
            with folder_lock(blobs):
                kept = checked_folder(blobs)
                compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
                record_folder(blobs, {"openvino": self._ov.__version__, "format": CACHE_FORMAT}, kept)
            return compiled

        try:  # OpenVINO raises RuntimeError for a graph it cannot read or compile
            if precision == "int8":  # the quantised graph (engine/backends/quantize.py): int8 convolutions
                compiled = open_int8(model, compile_graph, self.calibration, shape, self.cache_dir,
                                     damaged=RuntimeError)
            else:
                compiled = open_cached_onnx(model, compile_graph, precision="fp32", cache_dir=self.cache_dir,
                                            damaged=RuntimeError)
        except BackendError:
            raise
        except Exception as e:
            raise BackendError(f"OpenVINO could not compile the model: {first_line(e)}") from e
        self._request = compiled.create_infer_request()
        self.ready(model, shape)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        assert self._request is not None, "prepare() first"
        feeds = {0: x.contiguous().numpy()}
        feeds.update((i, c.numpy()) for i, c in enumerate(self.conditioning_batch(x), start=1))
        return torch.from_numpy(self._request.infer(feeds)[0])

    def describe(self) -> str:
        return f"openvino (cpu, {self.precision})"

    def close(self) -> None:
        super().close()
        self._request = None
