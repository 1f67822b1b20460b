"""Where an instance-norm op runs: the Triton kernels or the PyTorch reference.

This module imports nothing heavy.  Triton is imported only when a Triton path is chosen, through
``load_triton_kernels``, which turns a missing Triton into a KernelError that says what to
install.

``impl`` is one of:

- ``"auto"``: Triton for CUDA fp32/fp16/bf16 tensors when Triton is installed, else the reference.
  On CPU, auto never picks Triton's interpreter (it is thousands of times slower than ATen).
- ``"triton"``: always the Triton kernels; CUDA tensors, or CPU tensors when ``TRITON_INTERPRET=1``
  was set before the kernels were first used (the interpreter: for tests and debugging).
- ``"reference"``: always the plain PyTorch version.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Literal

import torch

from cyclestream.kernels.errors import KernelError

Impl = Literal["auto", "triton", "reference"]
IMPLS: tuple[str, ...] = ("auto", "triton", "reference")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreter_requested() -> bool:
    """True when ``TRITON_INTERPRET`` is set to a true value in the environment."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def triton_installed() -> bool:
    """True when Triton can be imported (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


def check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise KernelError(f"unknown kernel implementation {impl!r} (expected one of {', '.join(IMPLS)})")


def use_triton(x: torch.Tensor, impl: str) -> bool:
    """Whether an op on ``x`` runs the Triton kernels under ``impl`` (raises when it cannot)."""
    check_impl(impl)
    if impl == "reference":
        return False
    if impl == "auto":
        return x.is_cuda and x.dtype in TRITON_DTYPES and triton_installed()
    if x.dtype not in TRITON_DTYPES:
        raise KernelError(f"the Triton kernels take float32, float16 or bfloat16 tensors, got {x.dtype}")
    if not triton_installed():
        raise KernelError("the Triton kernels need Triton: pip install triton")
    if not x.is_cuda and not interpreter_requested():
        raise KernelError(
            f"the Triton kernels run on CUDA tensors, got a {x.device.type} tensor; for CPU use "
            "impl='reference', or set TRITON_INTERPRET=1 before the first kernel call (slow, for tests)"
        )
    return True


def load_triton_kernels() -> ModuleType:
    """The module holding the Triton kernels, imported on first use."""
    if not triton_installed():
        raise KernelError("the Triton kernels need Triton: pip install triton")
    from cyclestream.kernels import instance_norm_triton

    return instance_norm_triton
