"""Training modes against the exact eager fp32 step (pytest-benchmark suite over ``cyclestream bench train``).

    python -m pytest benchmarks/bench_train.py --benchmark-only               # every mode this machine has
    python -m pytest benchmarks/bench_train.py --benchmark-only -k "bf16"     # some of them

Each test times eager fp32 and one fast mode side by side, each in its own process, through the same
``bench_train`` the command runs (CycleGAN ResNet-9, 256² crops, batch 1).  pytest-benchmark's own
time is the whole run, start-up and compile included; the steady numbers are in each test's
``extra_info``: seconds per iteration of both modes, their ratio, peak RSS and the machine.  Nothing is
recorded for ``train``'s ``auto``: ``cyclestream bench train`` does that.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cyclestream.trainer.bench import REFERENCE, bench_train
from cyclestream.trainer.bench_options import TrainBenchOptions
from cyclestream.trainer.speed import has_bf16, modes

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
FAST_MODES = [s.name for s in modes(DEVICE.type, bf16=has_bf16(DEVICE)) if s != REFERENCE]


@pytest.mark.parametrize("mode", FAST_MODES)
def test_train_step(benchmark: Any, mode: str) -> None:
    options = TrainBenchOptions(modes=(mode,), record=False, progress=False, device=str(DEVICE))
    report = benchmark.pedantic(bench_train, args=(options,), rounds=1, iterations=1)
    reference = report.reference
    fast = next(r for r in report.results if r.speed.name == mode)
    assert reference is not None and fast.seconds > 0
    benchmark.extra_info.update(
        {
            "machine": report.machine,
            "config": report.config,
            "mode": mode,
            "eager_fp32_s_per_iteration": reference.seconds,
            "mode_s_per_iteration": fast.seconds,
            "speedup": round(report.ratio(fast), 3),
            "eager_fp32_peak_rss_mb": reference.peak_rss_mb,
            "mode_peak_rss_mb": fast.peak_rss_mb,
        }
    )
