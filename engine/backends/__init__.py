"""Backends by name.  Each backend module imports its own heavy library, and only when chosen.

| name        | runs on | precisions       | library                         |
| ----------- | ------- | ---------------- | ------------------------------- |
| auto        | any     | any              | picks one of the below (auto.py) |
| eager       | cpu/cuda| fp32, bf16, fp16 | PyTorch (the reference)          |
| compile     | cpu/cuda| fp32, bf16, fp16 | torch.compile / inductor         |
| onnxruntime | cpu     | fp32             | onnxruntime (`[onnx]` extra)     |
| openvino    | cpu     | fp32, bf16       | openvino (`[openvino]` extra)    |
| tensorrt    | cuda    | fp32, fp16, bf16 | tensorrt (`[gpu]`); torch-tensorrt ≥ 2.13 for `plugins` (`[gpu-plugins]`) |
"""

from __future__ import annotations

from cyclestream.engine.backends.base import PRECISIONS, Backend, FrameShape, Precision
from cyclestream.engine.errors import BackendError

BACKEND_NAMES = ("auto", "eager", "compile", "onnxruntime", "openvino", "tensorrt")


def create_backend(name: str, device: str = "cpu", kernels: str = "auto") -> Backend:
    """A backend instance for ``name`` ("auto" picks the best one available here when prepared).

    ``kernels`` (eager only): "auto" fuses the Triton instance-norm kernels in on CUDA and leaves the
    plain PyTorch path on the CPU; "triton" / "reference" force one; "off" never fuses."""
    if name == "auto":
        from cyclestream.engine.backends.auto import AutoBackend

        return AutoBackend(device, kernels=kernels)
    if name == "eager":
        from cyclestream.engine.backends.eager import EagerBackend

        return EagerBackend(device, kernels=kernels)
    if name == "compile":
        from cyclestream.engine.backends.compiled import CompiledBackend

        return CompiledBackend(device)
    if name == "onnxruntime":
        from cyclestream.engine.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(device)
    if name == "openvino":
        from cyclestream.engine.backends.openvino import OpenVINOBackend

        return OpenVINOBackend(device)
    if name == "tensorrt":
        from cyclestream.engine.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(device)
    raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(BACKEND_NAMES)}")


__all__ = ["BACKEND_NAMES", "PRECISIONS", "Backend", "FrameShape", "Precision", "create_backend"]
