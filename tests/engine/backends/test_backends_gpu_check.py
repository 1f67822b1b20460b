"""benchmarks/gpu_check.py runs anywhere: on a CPU-only machine every part is skipped with a reason, fast."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch

from cyclestream.engine.jobs.verify import random_model
from cyclestream.engine.models import GeneratorSpec
from cyclestream.engine.models.fuse import FusedInstanceNorm, FusedResnetBlock

GPU_CHECK = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_check.py"
PART_NAMES = ["kernels", "aot", "generator", "pipeline", "tensorrt"]


def load_gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine run the full check instead")
def test_on_cpu_every_part_is_skipped_with_a_reason_in_seconds(tmp_path: Path) -> None:
    t0 = time.monotonic()
    assert load_gpu_check().main(["--out", str(tmp_path)]) == 0
    assert time.monotonic() - t0 < 10
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [p["name"] for p in report["parts"]] == PART_NAMES  # in order of value
    assert all(p["status"] == "skipped" and p["reason"] == "no CUDA device" for p in report["parts"])
    assert report["environment"]["device"] == "no CUDA device"
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| kernels | skipped |" in table and "| tensorrt | skipped |" in table


def test_a_missing_package_is_a_skip_and_a_failed_part_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu_check = load_gpu_check()
    ctx = gpu_check.Context(tmp_path, True, time.monotonic() + 60, cuda=True)  # as if there were a GPU
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # nothing optional installed
    for part in (gpu_check.part_kernels, gpu_check.part_pipeline, gpu_check.part_tensorrt):
        result = part(ctx)
        assert result.status == "skipped" and "not installed" in result.reason, result
    monkeypatch.undo()

    def broken(ctx: object) -> object:
        raise RuntimeError("kernel mismatch\nsecond line")

    monkeypatch.setattr(gpu_check, "PARTS", [broken, gpu_check.part_tensorrt])
    assert gpu_check.main(["--out", str(tmp_path), "--quick"]) == 1
    parts = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]
    assert parts[0]["status"] == "failed" and parts[0]["reason"] == "RuntimeError: kernel mismatch"
    assert parts[1]["name"] == "tensorrt"  # a crashed part does not stop the others


def test_the_eager_baseline_has_kernels_off_and_the_fused_variant_has_them() -> None:
    """The baseline must be the plain layers (eager's kernels="auto" would fuse Triton on CUDA)."""
    gpu_check = load_gpu_check()
    model = random_model(GeneratorSpec(ngf=4, n_blocks=1))
    fused = (FusedInstanceNorm, FusedResnetBlock)
    baseline = gpu_check.prepare_generator(model, "eager", device="cpu")
    assert not any(isinstance(m, fused) for m in baseline.modules())
    kernels = gpu_check.prepare_generator(model, "eager+kernels", device="cpu")
    assert any(isinstance(m, FusedResnetBlock) for m in kernels.modules())
    assert not any(isinstance(m, fused) for m in model.generator.modules())  # the model itself is untouched
    variants = gpu_check.generator_variants(quick=False)
    assert {(v, p) for v, p, _ in variants} >= {("eager", "fp32"), ("eager+kernels", "fp16"), ("compile", "fp16")}
    assert all(set(sizes) <= set(gpu_check.SIZES) for _, _, sizes in variants)


@pytest.mark.parametrize(("x264_works", "status"), [(True, "passed"), (False, "failed")])
def test_pipeline_needs_x264_and_reports_nvenc_it_cannot_run_as_a_skip(
    x264_works: bool, status: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("av")
    gpu_check = load_gpu_check()
    monkeypatch.setattr(gpu_check, "make_clip", lambda path, frames: None)

    def translate(clip: Path, out: Path, codec: str, timeout: float) -> tuple[float | None, str]:
        if codec == "libx264" and x264_works:
            return 42.0, ""
        return None, "exit 1: encoder did not open"

    monkeypatch.setattr(gpu_check, "translate_clip", translate)
    part = gpu_check.part_pipeline(gpu_check.Context(tmp_path, True, time.monotonic() + 600, cuda=True))
    assert part.status == status
    nvenc = next(row for row in part.rows if row["codec"] == "h264_nvenc")
    assert nvenc["status"].startswith("skipped:")
