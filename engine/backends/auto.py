"""``--backend auto``: the fastest backend that works here, chosen when the job's shape is known.

The rule (``plan``), from the measurements in benchmarks/bench_backends.py (official 9-block
generator on a 2-core AVX-512-BF16 EPYC; images/s relative to eager fp32 at 64², 256², 512²: OpenVINO
bf16 2.3-3.1×, eager bf16 1.4-1.5×, OpenVINO fp32 1.3-1.5×, torch.compile fp32 1.2-1.3×, ONNX
Runtime fp32 1.1-1.35×):

- on a GPU (``--device cuda``, or ``auto`` with CUDA present): TensorRT when it is installed (the
  engine is built once and cached, with a progress message), else eager (fp16 autocast if asked);
- on the CPU, bf16: OpenVINO when it is installed and the CPU has fast bf16 (AVX-512-BF16 or AMX),
  else eager bf16;
- on the CPU, fp32: eager.  The exported backends are only 1.1-1.5× faster there, and each new
  model costs an ONNX export (10-20 s for the 9-block generator, cached per model) and moves the
  numerics away from the reference (OpenVINO fp32: 4e-4 relative); ``--backend openvino`` or
  ``onnxruntime`` ask for them explicitly;
- eager is always the last resort.

Backends that are not installed are left out of the plan quietly (the log says what was chosen and
why); a backend that is installed but fails to prepare falls back to the next with a warning that
says why — never silently.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable

import torch

from cyclestream.engine.backends.base import Backend, FrameShape, Precision, Wrapper
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError, first_line
from cyclestream.engine.machine import cpu_has_bf16

log = logging.getLogger("cyclestream")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (checked without importing it)."""
    return importlib.util.find_spec(module) is not None


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when PyTorch sees a GPU, else ``cpu``; anything else as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def plan(
    device: str,
    precision: str,
    have: Callable[[str], bool] = installed,
    bf16_cpu: bool | None = None,
) -> list[str]:
    """The backends to try, best first, for a job on ``device`` at ``precision`` (pure, testable)."""
    if device.startswith("cuda"):
        return ["tensorrt", "eager"] if have("tensorrt") and precision in ("fp32", "fp16") else ["eager"]
    if precision == "bf16" and have("openvino") and (cpu_has_bf16() if bf16_cpu is None else bf16_cpu):
        return ["openvino", "eager"]
    return ["eager"]


class AutoBackend(Wrapper):
    """Chooses and prepares a concrete backend in ``prepare``; ``run`` goes straight to it."""

    name = "auto"

    def __init__(
        self, device: str = "cpu", factory: Callable[[str, str], Backend] | None = None, kernels: str = "auto"
    ) -> None:
        self.device = resolve_device(device)
        self._factory = factory
        self.kernels = kernels  # forwarded to the eager backend when it is the one chosen
        self.chosen: Backend | None = None

    def _create(self, name: str) -> Backend:
        if self._factory is not None:
            return self._factory(name, self.device)
        from cyclestream.engine.backends import create_backend

        return create_backend(name, self.device, self.kernels)

    def prepare(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        candidates = plan(self.device, precision)
        log.debug("--backend auto: trying %s for %s on %s", ", ".join(candidates), precision, self.device)
        failures: list[str] = []
        for i, name in enumerate(candidates):
            try:
                backend = self._create(name)
                backend.prepare(model, shape, precision)
            except Exception as e:
                reason = first_line(e)
                failures.append(f"{name}: {reason}")
                if i + 1 < len(candidates):
                    log.warning("--backend auto: %s failed (%s); falling back to %s", name, reason, candidates[i + 1])
                continue
            if self.chosen is not None:
                self.chosen.close()
            self.chosen = backend
            log.info("--backend auto chose %s", backend.describe())
            return
        raise BackendError("no backend could run this model: " + "; ".join(failures))

    def inner(self) -> Backend:
        if self.chosen is None:
            raise BackendError("the auto backend was used before prepare()")
        return self.chosen

    def describe(self) -> str:
        return self.chosen.describe() if self.chosen is not None else "auto (not prepared)"

    def close(self) -> None:
        if self.chosen is not None:
            self.chosen.close()
