"""The CPU backends a family is checked on beside eager, and the skip when one is not installed."""

from __future__ import annotations

import pytest

# compile takes a minute or more on 2 cores: marked slow
CPU_BACKENDS = [pytest.param("compile", marks=pytest.mark.slow), "onnxruntime", "openvino"]


def skip_unless_installed(backend_name: str) -> None:
    """Skip the calling test, naming what to install, when ``backend_name`` cannot run here."""
    if backend_name == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'cyclestream[onnx]')")
        pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
    if backend_name == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'cyclestream[openvino]')")
