"""The fast training modes (trainer/speed.py): what ``auto`` picks and from what, the losses read back only
when logged, and a resume that is bit for bit within each mode (compile and bf16 included)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cyclestream.engine.jobs.roofline import Peaks
from cyclestream.trainer import speed as speed_module
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import TrainOptions
from cyclestream.trainer.speed import Speed, plan_speed, speed_key, store_record
from tests.trainer.helpers import Killed, assert_same_runs, kill_at, logged_losses

CPU = torch.device("cpu")


@pytest.fixture
def measuring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Auto may measure and read records (the suite turns it off); records go to a private cache."""
    monkeypatch.setenv("CYCLESTREAM_TUNE", "1")
    monkeypatch.setenv("CYCLESTREAM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_cpu(monkeypatch: pytest.MonkeyPatch, *, bf16: bool, ratio: float = 2.0) -> None:
    monkeypatch.setattr(speed_module, "has_bf16", lambda device: bf16)
    monkeypatch.setattr("cyclestream.engine.jobs.roofline.measure_peaks",
                        lambda: Peaks(fp32_gflops=100.0, bf16_gflops=100.0 * ratio, copy_gbps=10.0))


def test_the_suite_and_explicit_flags_get_what_they_say(tiny: Callable[..., TrainOptions]) -> None:
    # CYCLESTREAM_TUNE=0 (tests/conftest.py): the exact path, nothing measured.
    speed, why = plan_speed(tiny().resolved(), CPU)
    assert speed == Speed() and speed.exact and "nothing measured" in why
    speed, why = plan_speed(tiny(precision="bf16", compile="on", channels_last="off").resolved(), CPU)
    assert (speed.name, why) == ("compile bf16", "as asked")
    assert not speed.fused_adam  # the default Adam on the CPU: fused measured no faster there


@pytest.mark.parametrize(("bf16", "ratio", "want"), [(True, 2.0, "bf16"), (True, 1.2, "fp32"), (False, 9.0, "fp32")])
def test_auto_precision_without_a_record(tiny: Callable[..., TrainOptions], measuring: Path,
                                         monkeypatch: pytest.MonkeyPatch, bf16: bool, ratio: float, want: str) -> None:
    fake_cpu(monkeypatch, bf16=bf16, ratio=ratio)
    speed, why = plan_speed(tiny().resolved(), CPU)
    assert speed == Speed(precision=want)  # compile and layout stay off until measured
    assert "until `cyclestream bench train`" in why
    if not bf16:
        assert "no AVX-512-BF16 or AMX" in why  # never emulated bf16


def test_auto_takes_the_fastest_measured_mode_the_flags_allow(tiny: Callable[..., TrainOptions], measuring: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, bf16=True)
    options = tiny().resolved()
    rows = [(Speed(), 3.7), (Speed(precision="bf16", compile=True, channels_last=True), 1.2),
            (Speed(compile=True), 2.9), (Speed(precision="bf16"), 1.9)]
    store_record(speed_key(options, CPU), [{"speed": s.to_dict(), "seconds": t} for s, t in rows])
    assert plan_speed(options, CPU)[0].name == "compile+cl bf16"
    assert plan_speed(tiny(precision="fp32").resolved(), CPU)[0].name == "compile fp32"
    assert plan_speed(tiny(compile="off").resolved(), CPU)[0].name == "eager bf16"
    # A machine without bf16 never takes a bf16 row, even one recorded under the same key.
    fake_cpu(monkeypatch, bf16=False)
    assert plan_speed(options, CPU)[0].name == "compile fp32"
    # The record belongs to its configuration: another crop is not measured.
    assert plan_speed(tiny(crop_size=12, load_size=12).resolved(), CPU)[0] == Speed()


def test_a_damaged_record_is_no_record(tiny: Callable[..., TrainOptions], measuring: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, bf16=False)
    options = tiny().resolved()
    path = store_record(speed_key(options, CPU), [{"speed": Speed(compile=True).to_dict(), "seconds": 1.0}])
    assert path is not None
    path.write_text('{"key": {"format": 1}, "rows": [')
    assert plan_speed(options, CPU)[0] == Speed()


def test_losses_read_back_in_chunks_log_every_iteration(tiny: Callable[..., TrainOptions]) -> None:
    every = train(tiny("every", log_every=1))
    chunked = train(tiny("chunked", log_every=7))
    assert logged_losses(every.run_dir) == logged_losses(chunked.run_dir)
    lines = [json.loads(x) for x in (chunked.run_dir / "log.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == list(range(1, 19))
    assert all(x["seconds"] > 0 for x in lines)
    assert chunked.speed == "eager fp32" and chunked.peak_rss_mb > 50


MODES = [
    pytest.param({"precision": "bf16", "compile": "off", "channels_last": "off"}, id="eager-bf16"),
    pytest.param({"precision": "fp32", "compile": "off", "channels_last": "on"}, id="eager-cl-fp32"),
    pytest.param({"precision": "fp32", "compile": "on", "channels_last": "off"}, id="compile-fp32",
                 marks=pytest.mark.slow),
    pytest.param({"precision": "bf16", "compile": "on", "channels_last": "on"}, id="compile-cl-bf16",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("mode", MODES)
def test_resume_is_bit_for_bit_within_a_mode(tiny: Callable[..., TrainOptions], mode: dict[str, str]) -> None:
    # 18 iterations straight against 11 (checkpoint at 8, killed at 11) + the rest, in the same mode.
    reference = train(tiny("reference", **mode))
    assert reference.finished and reference.speed == Speed(
        precision=mode["precision"], compile=mode["compile"] == "on", channels_last=mode["channels_last"] == "on").name
    with pytest.raises(Killed):
        train(tiny("killed", save_every_iters=4, **mode), on_iteration=kill_at(11))
    resumed = train(tiny("killed", resume=True, save_every_iters=4, **mode))
    assert resumed.finished
    assert_same_runs(reference.run_dir, resumed.run_dir)
    exact = train(tiny("exact", precision="fp32", compile="off", channels_last="off"))
    if mode["precision"] == "bf16":  # a different mode is a different (close) run, not the same bits
        assert logged_losses(exact.run_dir) != logged_losses(reference.run_dir)
