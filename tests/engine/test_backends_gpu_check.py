"""benchmarks/gpu_check.py runs anywhere: on a CPU-only machine every GPU part is reported as skipped."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

GPU_CHECK = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def load_gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine run the full check instead")
def test_quick_mode_on_cpu_reports_gpu_parts_as_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_gpu_check().main(["--quick", "--seconds", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "kernel tests: skipped (no CUDA device)" in out
    assert "native build: skipped (no CUDA device)" in out
    assert "| eager | fp32 |" in out  # the CPU baseline ran
    rows = [line for line in out.splitlines() if line.startswith("| tensorrt")]
    assert len(rows) == 5 and all("skipped: no CUDA device" in row for row in rows)
    assert "gpu_check: all checks passed" in out
