"""Where a run trains and how reproducible it is: the one-line device report (``--device auto`` is
resolved by ``cyclestream.engine.options.resolve_device``, as for every command), ``--deterministic``,
and the record of the machine a checkpoint was written on.

On the CPU every kernel the trainer uses is deterministic, so a resumed run is bit for bit the
uninterrupted one.  On CUDA several are not (cuDNN picks convolution algorithms by timing, some
backward kernels add with atomics); ``--deterministic`` asks torch for deterministic algorithms
only, turns cuDNN's benchmark off and its deterministic mode on, and sets cuBLAS's workspace
(``CUBLAS_WORKSPACE_CONFIG=:4096:8``, read when the process first uses cuBLAS: ``cyclestream
train`` sets it before anything touches CUDA; a program that used cuBLAS before calling ``train``
must set it itself).  The one kernel the networks need that has no deterministic CUDA backward,
reflection padding, is replaced in the trained networks by the same padding made of slices and
flips (same values, a deterministic gradient).  Bit for bit then holds on the same GPU model,
driver and torch build.  (Written from PyTorch's reproducibility documentation; the CUDA side has
not run on a GPU here yet: tests/trainer/test_train_device.py checks it where CUDA is.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_WORKSPACE = ":4096:8"


def describe_device(device: torch.device, processes: int = 1) -> str:
    """``cuda:0 (NVIDIA H200)`` or ``cpu (2 threads)``, for the log line that says where training runs."""
    if device.type == "cuda":
        text = f"{device} ({torch.cuda.get_device_name(device)})"
        return text + (f", one GPU for each of {processes} processes" if processes > 1 else "")
    threads = torch.get_num_threads()
    text = f"cpu ({threads} thread{'s' if threads != 1 else ''}"
    return text + (f" in each of {processes} processes)" if processes > 1 else ")")


def set_cublas_workspace() -> None:
    """Set cuBLAS's deterministic workspace for this process and the ones it starts (before CUDA
    initialises cuBLAS; a value already set is kept)."""
    os.environ.setdefault(CUBLAS_ENV, CUBLAS_WORKSPACE)


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Inside, with ``enabled``: deterministic algorithms only, cuDNN deterministic and not
    benchmarking, cuBLAS's workspace set; the previous settings come back on leaving."""
    if not enabled:
        yield
        return
    had_env = CUBLAS_ENV in os.environ
    set_cublas_workspace()
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
        if not had_env:
            os.environ.pop(CUBLAS_ENV, None)


class SlicedReflectionPad2d(nn.ReflectionPad2d):
    """``nn.ReflectionPad2d`` built from slices, flips and concatenation: the same values, and a
    backward that is deterministic on CUDA (the native kernel's is not, and
    ``torch.use_deterministic_algorithms(True)`` refuses it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self.padding
        h, w = x.shape[-2], x.shape[-1]
        if max(left, right) >= w or max(top, bottom) >= h:
            return F.pad(x, self.padding, mode="reflect")  # raises the usual error
        x = torch.cat([x[..., 1 : left + 1].flip(-1), x, x[..., w - 1 - right : w - 1].flip(-1)], -1)
        return torch.cat([x[..., 1 : top + 1, :].flip(-2), x, x[..., h - 1 - bottom : h - 1, :].flip(-2)], -2)


def use_deterministic_padding(net: nn.Module) -> int:
    """Swap every ``nn.ReflectionPad2d`` in ``net`` for :class:`SlicedReflectionPad2d` (no
    parameters, so the state dict is unchanged); returns how many were swapped."""
    swapped = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.ReflectionPad2d:
                setattr(parent, name, SlicedReflectionPad2d(child.padding))
                swapped += 1
    return swapped


def environment(device: torch.device, deterministic: bool) -> dict[str, Any]:
    """What decides whether a resumed run can be bit for bit the uninterrupted one (saved in state.pt)."""
    env: dict[str, Any] = {"torch": str(torch.__version__), "device": device.type, "deterministic": bool(deterministic)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = str(torch.version.cuda)
        env["driver"] = _driver_version()
    return env


def _driver_version() -> str:
    with contextlib.suppress(Exception):
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    return "unknown"


def explain_resume(saved: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    """A warning when this resume cannot be bit for bit the uninterrupted run, else None."""
    if saved is not None:
        on_cpu = saved.get("device") == now["device"] == "cpu"  # CPU kernels are deterministic either way
        keys = [k for k in sorted(set(saved) | set(now)) if not (on_cpu and k == "deterministic")]
        changed = [f"{k} {saved.get(k)!s} → {now.get(k)!s}" for k in keys if saved.get(k) != now.get(k)]
        if changed:
            return ("resuming with " + ", ".join(changed) + ": training continues correctly, but not bit for bit "
                    "as the uninterrupted run would have")
    if now["device"] == "cuda" and not now["deterministic"]:
        return ("resuming on CUDA without --deterministic: the result is close to, not bit for bit, what the "
                "uninterrupted run would have given")
    return None
