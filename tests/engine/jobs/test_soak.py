"""``bench stream``: a real live job soaked for a few seconds, and the slope that judges it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cyclestream.engine.jobs.soak import WARMUP_SHARE, per_hour


def test_slope_is_growth_per_hour_after_the_warm_up() -> None:
    times = [float(t) for t in range(100)]
    assert per_hour(times, [10.0 + t for t in times]) == pytest.approx(3600.0)  # 1 MiB/s
    settling = [500.0 if t < WARMUP_SHARE * 100 else 10.0 for t in times]  # start-up allocations
    assert per_hour(times, settling) == pytest.approx(0.0, abs=1e-6)
    assert per_hour([0.0], [1.0]) == 0.0


@pytest.mark.slow
def test_bench_stream_soaks_a_live_job(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "cyclestream", "-q", "bench", "stream", "--model", str(tiny_model),
         "--source", "lavfi:testsrc2=size=64x48:rate=30", "--duration", "4", "--interval", "0.2",
         "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "MiB/h" in proc.stdout and "Traceback" not in proc.stderr
    report = json.loads(out.read_text())
    assert report["samples"] >= 10
    assert report["frames_out"] > 30 and report["dropped"] >= 0
    assert report["rss_mb"]["start"] > 10 and report["open_fds"]["start"] > 2
    assert set(report["latency_ms"]) == {"p50", "p95", "p99"}
    assert isinstance(report["rss_mb_per_hour"], float)
