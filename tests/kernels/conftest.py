"""Run the Triton kernels on CPU tensors through Triton's interpreter.

Triton reads ``TRITON_INTERPRET`` whenever a ``@triton.jit`` decorator runs: for Triton's own library
functions (``tl.sum`` ...) when ``triton.language`` is first imported, for ours when
``cyclestream.kernels.instance_norm_triton`` is.  So the variable is set here, at conftest import
(before pytest imports any test module of this folder), and ``triton.language`` is imported right
away under it, so that a later import of triton elsewhere in the session (torch.compile imports it)
finds it already interpreted.  The ``triton_kernels`` fixture reloads our kernel module if something
imported it without the interpreter, and fails with what to do if triton itself was imported before
this file ran.  Without Triton the tests that need it are skipped with a reason.

The variable stays set for the whole session; on a CPU-only machine nothing else compiles Triton
kernels.  (On a CUDA machine it would turn Inductor's GPU kernels into interpreted ones for tests run
in the same process, so run tests/kernels in a process of its own there.)
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

import pytest

from cyclestream.kernels._dispatch import triton_installed  # imports no Triton

os.environ["TRITON_INTERPRET"] = "1"
if triton_installed():
    importlib.import_module("triton.language")

KERNELS_MODULE = "cyclestream.kernels.instance_norm_triton"


@pytest.fixture(scope="session")
def triton_kernels() -> ModuleType:
    """The Triton kernel module, its kernels running under the CPU interpreter."""
    if not triton_installed():
        pytest.skip("triton is not installed (pip install triton): Triton kernel tests skipped")
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(tl.standard.sum, InterpretedFunction):
        pytest.fail(
            "triton was imported before tests/kernels/conftest.py set TRITON_INTERPRET=1, so its library "
            "is compiled, not interpreted: set TRITON_INTERPRET=1 in the environment or run tests/kernels alone"
        )
    module = importlib.import_module(KERNELS_MODULE)
    if not isinstance(module._apply_kernel, InterpretedFunction):
        module = importlib.reload(sys.modules[KERNELS_MODULE])
    assert isinstance(module._apply_kernel, InterpretedFunction)
    return module
