"""Several live streams through one prepared backend: real sources, sinks and model, one batch per call."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from cyclestream.cli import main
from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.backends.shared import SharedBackend
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.jobs.stream import StreamOptions, run_streams
from cyclestream.engine.media.synthetic import synthetic_frame
from tests.engine.media_checks import video_times


def test_concurrent_calls_become_one_batch_and_each_stream_gets_its_own_frames(tiny_model: Path) -> None:
    backend = prepare_backend(load_model(tiny_model), RunOptions(backend="eager", batch_size=3), 48, 64)
    frames = [torch.from_numpy(synthetic_frame(i * 17, 64, 48)[None]) for i in range(3)]
    alone = [backend.run(f) for f in frames]
    shared = SharedBackend(backend, streams=3, gather=0.5)  # a generous gather: all three join one call
    out: list[torch.Tensor | None] = [None] * 3
    barrier = threading.Barrier(3)

    def stream(k: int) -> None:
        client = shared.client()
        barrier.wait()
        out[k] = client.run(frames[k])

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        shared.close()
        backend.close()
    assert shared.calls == 1 and shared.frames == 3
    for k in range(3):
        got = out[k]
        assert got is not None
        diff = np.abs(got.numpy().astype(int) - alone[k].numpy().astype(int)).max()
        assert diff <= 2, f"stream {k} got another stream's frame (max diff {diff})"


def test_three_streams_one_model_each_with_its_own_sink_and_report(tiny_model: Path, tmp_path: Path) -> None:
    sinks = [tmp_path / "a.ts", tmp_path / "b.mkv", "null"]
    jobs = [
        StreamOptions(temporal="off", source=f"lavfi:testsrc2=size=64x48:rate={rate}", sink=str(sink), model=tiny_model,
                      duration=3.0, stats_interval=0, max_latency=5.0)
        for rate, sink in zip((10, 15, 20), sinks, strict=True)
    ]
    reports = run_streams(jobs)
    assert [r.source for r in reports] == [j.source for j in jobs]
    for report, rate in zip(reports, (10, 15, 20), strict=True):
        assert report.stats.frames > 5
        assert report.frames_in == pytest.approx(3.0 * rate, rel=0.5)  # each stream keeps its own clock
    for report, sink in zip(reports[:2], sinks[:2], strict=True):
        assert len(video_times(Path(sink))) == report.stats.frames


@pytest.mark.slow
def test_cli_pairs_sinks_with_sources_in_order(tiny_model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stream", "--model", str(tiny_model), "--source", "lavfi:testsrc2", "--source", "lavfi:testsrc",
                 "--sink", str(tmp_path / "one.ts")]) == 2
    assert "2 --source but 1 --sink" in capsys.readouterr().err
    proc = subprocess.run(
        [sys.executable, "-m", "cyclestream", "-q", "stream", "--model", str(tiny_model),
         "--source", "lavfi:testsrc2=size=64x48:rate=10", "--sink", str(tmp_path / "x.ts"),
         "--source", "lavfi:testsrc=size=64x48:rate=10", "--sink", "null", "--duration", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summaries = json.loads(proc.stdout)
    assert [s["sink"] for s in summaries] == [str(tmp_path / "x.ts"), "null"]
    assert all(s["frames_out"] > 0 for s in summaries)
    assert len(video_times(tmp_path / "x.ts")) == summaries[0]["frames_out"]


@pytest.mark.slow
def test_bench_compares_one_shared_model_with_separate_processes(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "streams.json"
    proc = subprocess.run(
        [sys.executable, "-m", "cyclestream", "-q", "bench", "stream", "--model", str(tiny_model),
         "--source", "lavfi:testsrc2=size=64x48:rate=10", "--streams", "1,2", "--duration", "2",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["streams"], r["mode"]) for r in rows] == [(1, "shared"), (1, "processes"), (2, "shared"),
                                                         (2, "processes")]
    assert all(r["fps"] > 0 and r["p95_ms"] > 0 for r in rows)
    assert "p95 ms (worst)" in proc.stdout
