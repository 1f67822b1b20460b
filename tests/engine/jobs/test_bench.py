"""The benchmark harness in quick mode, so it cannot rot: real runs, tiny sizes, every output written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from cyclestream.cli import build_parser, main
from cyclestream.cli.flags import from_args
from cyclestream.engine.jobs.bench_options import (
    ModelBenchOptions,
    PipelineBenchOptions,
    StreamBenchOptions,
    TemporalBenchOptions,
    parse_bench_size,
)
from cyclestream.engine.jobs.roofline import count_macs
from cyclestream.engine.models import GeneratorSpec, build_generator
from cyclestream.engine.options import OptionError


@pytest.mark.slow
def test_bench_model_quick_writes_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "-q",
                "bench",
                "model",
                "--quick",
                "--backends",
                "eager",
                "--precision",
                "fp32,bf16",
                "--json",
                str(tmp_path / "r.json"),
                "--plot",
                str(tmp_path / "r.png"),
                "--markdown",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "images/s" in out and "| eager | bf16 |" in out
    report = json.loads((tmp_path / "r.json").read_text())
    rows = report["rows"]
    baseline = rows[0]
    assert (baseline["backend"], baseline["precision"], baseline["batch"], baseline["speedup"]) == (
        "eager",
        "fp32",
        1,
        1.0,
    )
    bf16 = next(r for r in rows if r["precision"] == "bf16")
    assert bf16["images_per_s"] > 0 and 0 < bf16["rel_l2"] < 0.1 and bf16["speedup"] > 0
    assert report["peaks"]["fp32_gflops"] > 0 and report["machine"]["cores"] >= 1
    with Image.open(tmp_path / "r.png") as im:
        assert im.width > 400


def test_unknown_backend_is_reported_as_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "-q",
                "bench",
                "model",
                "--quick",
                "--backends",
                "nosuchbackend",
                "--precision",
                "fp32",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert rows[-1]["skipped"] and "unknown backend" in rows[-1]["skipped"]


@pytest.mark.slow
def test_bench_pipeline_measures_each_stage_and_the_whole(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    src = make_clip("clip.mp4", width=64, height=48, frames=20, audio=True)
    assert (
        main(
            [
                "-q",
                "bench",
                "pipeline",
                "--input",
                str(src),
                "--model",
                str(tiny_model),
                "--json",
                str(tmp_path / "p.json"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["frames"] == 20
    assert set(report["stage_fps"]) == {"decode", "model", "encode"}
    assert all(v > 0 for v in report["stage_fps"].values()) and report["pipeline_fps"] > 0
    assert report["efficiency"] > 0
    assert report["pipeline_frames"] == 20


@pytest.mark.slow
def test_bench_pipeline_frames_limits_every_stage(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    src = make_clip("clip.mkv", width=64, height=48, frames=60, codec="ffv1")  # a keyframe every 12 frames
    assert (
        main(
            [
                "-q",
                "bench",
                "pipeline",
                "--input",
                str(src),
                "--model",
                str(tiny_model),
                "--frames",
                "10",
                "--json",
                str(tmp_path / "p.json"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["frames"] == 10
    # The overlapped run used the head up to the next keyframe (frame 12), not the whole clip.
    assert 10 <= report["pipeline_frames"] < 60


@pytest.mark.slow
def test_macs_of_the_official_generator() -> None:
    # resnet_9blocks at 256x256: 9 blocks x 2 convs of 256x256x3x3 at 64x64 dominate (≈ 87% of the MACs).
    macs = count_macs(build_generator(GeneratorSpec()), 256, 256, 4)
    block_macs = 18 * 64 * 64 * 256 * 256 * 9
    assert 0.85 < block_macs / macs < 0.9


@pytest.mark.parametrize(("text", "size"), [("256", (256, 256)), ("720p", (1280, 720)), ("640x360", (640, 360))])
def test_size_names(text: str, size: tuple[int, int]) -> None:
    assert parse_bench_size(text) == size


def test_comma_lists_are_checked_item_by_item(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in [
        (["bench", "model", "--batch", "1,0"], "argument --batch: must be at least 1, got 0"),
        (["bench", "model", "--batch", "1,two"], "argument --batch: 'two' is not an integer (in '1,two')"),
        (["bench", "model", "--precision", "fp32,fp8"], "argument --precision: must be one of fp32, bf16, fp16"),
        (["bench", "model", "--size", "256,0x10"], "argument --size: unsupported size 0x10"),
        (["bench", "model", "--backends", "eager,"], "argument --backends: expected a comma-separated list"),
        (["bench", "temporal", "--input", "a", "--methods", "off,wobble"], "argument --methods: must be one of"),
        (["bench", "temporal", "--input", "a", "--noise", "0,-3"], "argument --noise: must be at least 0, got -3"),
        (["bench", "stream", "--streams", "2,0"], "argument --streams: must be at least 1, got 0"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(argv)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err.splitlines()[-1], argv
    with pytest.raises(OptionError, match=r"^ModelBenchOptions\.batches: must be at least 1, got 0$"):
        ModelBenchOptions(batches=(1, 0))
    with pytest.raises(OptionError, match=r"^TemporalBenchOptions\.methods: must be one of .*; got 'wobble'$"):
        TemporalBenchOptions(methods=["off", "wobble"])
    with pytest.raises(OptionError, match=r"^ModelBenchOptions\.sizes: must name at least one value$"):
        ModelBenchOptions(sizes=())


def test_flags_build_the_same_options_as_the_library() -> None:
    parse = build_parser().parse_args
    args = parse(["bench", "model", "--batch", "1,2", "--size", "256,720p,64x48", "--precision", "bf16"])
    assert from_args(ModelBenchOptions, args) == ModelBenchOptions(
        batches=(1, 2), sizes=((256, 256), (1280, 720), (64, 48)), precisions=("bf16",))
    assert from_args(ModelBenchOptions, parse(["bench", "model"])) == ModelBenchOptions()
    assert from_args(PipelineBenchOptions, parse(["bench", "pipeline", "--input", "a"])) == PipelineBenchOptions()
    assert from_args(TemporalBenchOptions, parse(["bench", "temporal", "--input", "a"])) == TemporalBenchOptions()
    args = parse(["bench", "stream", "--streams", "1,4", "--duration", "2", "--batch-size", "2"])
    options = from_args(StreamBenchOptions, args, source=args.source, model=args.model)
    assert options.streams == (1, 4) and options.stream.duration == 2.0 and options.stream.run.batch_size == 2
    assert options.stream.source == StreamBenchOptions().stream.source and options.stream.stats_interval == 0


def test_help_gives_list_defaults_as_they_are_typed(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, said in [(["bench", "model", "--help"], ["(default fp32,bf16)", "(default 1)", "(default 256x256)"]),
                       (["bench", "temporal", "--help"], ["(default off,blend,flow)", "(default 0,3)"])]:
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert all(s in out for s in said), (argv, out)


def test_an_output_that_cannot_be_written_fails_before_the_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cyclestream.engine.jobs import bench

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(bench, "bench_model_file", never)
    assert main(["-q", "bench", "model", "--quick", "--json", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"cyclestream: error: --json: cannot write {tmp_path}: it is a folder"


def test_peaks_skip_emulated_bf16_stop_at_their_budget_and_are_kept_per_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """distill's evaluation and bench measure the machine's peaks: bf16 only where the CPU has it (an
    emulated bf16 matmul took minutes), each measurement cut at the budget, and once per machine."""
    from cyclestream.engine import machine
    from cyclestream.engine.jobs import roofline

    monkeypatch.setenv("CYCLESTREAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(machine, "cpu_has_bf16", lambda: False)
    dtypes: list[torch.dtype] = []
    real_matmul, real_conv = roofline._matmul_gflops, roofline._conv_gflops
    monkeypatch.setattr(roofline, "_matmul_gflops", lambda dtype, *a: dtypes.append(dtype) or real_matmul(dtype, *a))
    monkeypatch.setattr(roofline, "_conv_gflops", lambda dtype, *a: dtypes.append(dtype) or real_conv(dtype, *a))
    peaks = roofline.measure_peaks(n=512, copy_mb=8, budget=0.5)
    assert torch.bfloat16 not in dtypes and peaks.bf16_gflops == peaks.fp32_gflops > 0
    calls = []
    assert roofline._best_seconds(lambda: calls.append(1), repeats=5, deadline=0.0) >= 0 and len(calls) == 1

    def never(*_: object, **__: object) -> float:
        raise AssertionError("measured again")

    monkeypatch.setattr(roofline, "_best_seconds", never)
    assert roofline.measure_peaks(n=512, copy_mb=8) == peaks  # read back, nothing measured
