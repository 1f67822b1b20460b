"""The Triton kernels on CUDA, in a process of their own so that this folder's TRITON_INTERPRET=1 cannot leak in.

``cyclestream.kernels.cuda_check`` runs every op × dtype × layout × shape (1×1 rows to the 1080p
trunk) against the references and measures GB/s next to a copy; ``run_clean`` starts it with the
interpreter variable removed.  On a machine without CUDA the GPU test is skipped with a reason and
the clean process is checked to report a skip (not an interpreted run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from cyclestream.kernels import cuda_check

HAVE_CUDA = torch.cuda.is_available()


def _run(tmp_path: Path, *args: str) -> dict[str, object]:
    out = tmp_path / "cuda_check.json"
    proc = cuda_check.run_clean("cyclestream.kernels.cuda_check", ["--json", str(out), *args], timeout=900)
    assert out.exists(), proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_the_check_refuses_to_run_under_the_interpreter() -> None:
    assert os.environ.get("TRITON_INTERPRET") == "1"  # conftest.py
    assert "TRITON_INTERPRET" not in cuda_check.clean_env()
    result = cuda_check.run(quick=True)
    assert result["status"] == "failed" and "TRITON_INTERPRET" in str(result["reason"])


@pytest.mark.skipif(HAVE_CUDA, reason="this machine has CUDA: test_kernels_match_the_references_on_cuda runs")
def test_without_cuda_the_clean_process_reports_a_skip(tmp_path: Path) -> None:
    result = _run(tmp_path, "--quick")
    assert result == {"status": "skipped", "reason": "no CUDA device"}


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA device (the Triton kernels compiled for the GPU)")
def test_kernels_match_the_references_on_cuda(tmp_path: Path) -> None:
    result = _run(tmp_path, "--quick")
    assert result["status"] == "passed", result["reason"]
    cases = result["cases"]
    assert isinstance(cases, list) and {c["dtype"] for c in cases} == {"fp32", "fp16", "bf16"}
    assert {c["layout"] for c in cases} == {"nchw", "channels_last"}
    assert {"1x1 rows", "1080p trunk"} <= {c["shape"] for c in cases}
    rows = result["bandwidth"]
    assert isinstance(rows, list) and rows and all(r["copy_gbps"] > 0 and r["in+relu_gbps"] > 0 for r in rows)
