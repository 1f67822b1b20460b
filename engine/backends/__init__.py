"""Backends by name (``REGISTRY``).  Each backend module imports its own heavy library, and only when chosen.

| name        | runs on | precisions       | library                         |
| ----------- | ------- | ---------------- | ------------------------------- |
| auto        | any     | any              | measured: the fastest below that matches eager fp32 (tune.py) |
| eager       | cpu/cuda| fp32, bf16, fp16 | PyTorch (the reference)          |
| compile     | cpu/cuda| fp32, bf16, fp16 | torch.compile / inductor         |
| onnxruntime | cpu     | fp32, int8       | onnxruntime (`[onnx]` extra)     |
| openvino    | cpu     | fp32, bf16, int8 | openvino (`[openvino]` extra)    |
| tensorrt    | cuda    | fp32, fp16, bf16 | tensorrt (`[gpu]`); torch-tensorrt ≥ 2.13 for `plugins` (`[gpu-plugins]`) |
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

from cyclestream.engine.errors import BackendError

if TYPE_CHECKING:
    from cyclestream.engine.backends.base import Backend, FrameShape
    from cyclestream.engine.backends.options import PRECISIONS, Precision

_FROM_BASE = ("Backend", "FrameShape")
_FROM_OPTIONS = ("PRECISIONS", "Precision")


def __getattr__(name: str) -> Any:
    """The interface types, imported from base.py (and so torch) only when asked for: the registry
    below stays free of torch, which keeps ``cyclestream --help`` quick."""
    if name in _FROM_BASE:
        from cyclestream.engine.backends import base

        return getattr(base, name)
    if name in _FROM_OPTIONS:
        from cyclestream.engine.backends import options

        return getattr(options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class BackendEntry:
    """One way of running a generator: its ``--backend`` name, one line of help, and where its class
    lives (imported only when chosen, so a missing optional library costs nothing until then)."""

    name: str
    help: str
    module: str
    cls: str
    takes_kernels: bool = False  # the --kernels option applies (eager, and auto which may pick eager)

    def create(self, device: str, kernels: str) -> Backend:
        backend_class = getattr(import_module(self.module), self.cls)
        return backend_class(device, kernels=kernels) if self.takes_kernels else backend_class(device)


_HERE = "cyclestream.engine.backends"
REGISTRY: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry("auto", "the fastest of these that matches eager fp32, measured here on a model's first run "
                     "(cyclestream tune)",
                     f"{_HERE}.auto", "AutoBackend", takes_kernels=True),
        BackendEntry("eager", "PyTorch, the reference", f"{_HERE}.eager", "EagerBackend", takes_kernels=True),
        BackendEntry("compile", "torch.compile (inductor)", f"{_HERE}.compiled", "CompiledBackend"),
        BackendEntry("onnxruntime", "ONNX Runtime, CPU fp32/int8", f"{_HERE}.onnxruntime", "OnnxRuntimeBackend"),
        BackendEntry("openvino", "OpenVINO, CPU fp32/bf16/int8", f"{_HERE}.openvino", "OpenVINOBackend"),
        BackendEntry("tensorrt", "TensorRT, NVIDIA GPU fp32/fp16", f"{_HERE}.tensorrt", "TensorRTBackend"),
    )
}
BACKEND_NAMES = tuple(REGISTRY)


def create_backend(name: str, device: str = "auto", kernels: str = "auto") -> Backend:
    """A backend instance for ``name`` ("auto" picks the best one available here when prepared) on
    ``device`` (``auto``: CUDA where torch sees a GPU, else the CPU).

    ``kernels`` (eager, and auto when it picks eager): "auto" fuses the Triton instance-norm kernels in
    on CUDA and leaves the plain PyTorch path on the CPU; "triton" / "reference" force one; "off"
    never fuses."""
    from cyclestream.engine.options import resolve_device

    entry = REGISTRY.get(name)
    if entry is None:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(BACKEND_NAMES)}")
    return entry.create(resolve_device(device), kernels)


def backends_help() -> str:
    """The ``--backend`` help text, from the registry."""
    return "; ".join(f"{e.name}: {e.help}" for e in REGISTRY.values())


__all__ = [
    "BACKEND_NAMES", "PRECISIONS", "REGISTRY", "Backend", "BackendEntry", "FrameShape", "Precision",
    "backends_help", "create_backend",
]
