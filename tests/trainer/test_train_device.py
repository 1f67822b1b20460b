"""Where training runs and how reproducible it is: --device auto, the device line, --deterministic
(flags set and put back, recorded with the run, reflection padding with a deterministic backward),
the warning when a resume cannot be bit for bit; and, on a GPU, a deterministic CUDA resume."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from cyclestream.cli.train import add_train_options, train_options
from cyclestream.engine.models import GeneratorSpec, build_generator
from cyclestream.engine.options import resolve_device
from cyclestream.trainer.device import (
    CUBLAS_ENV,
    SlicedReflectionPad2d,
    describe_device,
    deterministic_mode,
    explain_resume,
    use_deterministic_padding,
)
from cyclestream.trainer.loop import train, with_device
from cyclestream.trainer.options import TrainOptions
from cyclestream.trainer.state import load_state, save_state
from tests.trainer.helpers import Killed, assert_same_runs, kill_at

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch sees no GPU here)")


def test_device_auto_is_cuda_when_there_is_one(monkeypatch: pytest.MonkeyPatch,
                                               tiny_flags: Callable[[Path], list[str]], tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_train_options(parser)
    flags = [f for f in tiny_flags(tmp_path / "run") if f not in ("--device", "cpu")]
    opts = train_options(parser.parse_args(flags))
    assert opts.run.device == "auto" and not opts.run.deterministic and opts.run.ddp_recipe == "scaled"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and with_device(opts).run.device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and with_device(opts).run.device == "cuda"
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"


def test_the_device_line() -> None:
    threads = torch.get_num_threads()
    assert describe_device(torch.device("cpu")) == f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    assert describe_device(torch.device("cpu"), 2).endswith(" in each of 2 processes)")


def test_deterministic_mode_is_set_inside_and_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CUBLAS_ENV, raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    with deterministic_mode(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ[CUBLAS_ENV] == ":4096:8"
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    assert CUBLAS_ENV not in os.environ
    monkeypatch.setenv(CUBLAS_ENV, ":16:8")  # a value the user set is kept
    with deterministic_mode(True):
        assert os.environ[CUBLAS_ENV] == ":16:8"
    assert os.environ[CUBLAS_ENV] == ":16:8"


def test_deterministic_cpu_run_is_recorded_and_unchanged(tiny: Callable[..., TrainOptions]) -> None:
    # On the CPU --deterministic changes no kernel: the same bits, and the run says it was deterministic.
    plain = train(tiny("plain", epochs=1, epochs_decay=0, max_iters=3))
    strict = train(tiny("strict", epochs=1, epochs_decay=0, max_iters=3, deterministic=True))
    assert not torch.are_deterministic_algorithms_enabled()  # put back after the run
    assert json.loads((strict.run_dir / "options.json").read_text())["run"]["deterministic"] is True
    state = load_state(strict.run_dir / "state.pt")
    assert state["options"]["run"]["deterministic"] is True
    assert state["environment"] == {"torch": str(torch.__version__), "device": "cpu", "deterministic": True}
    assert_same_runs(plain.run_dir, strict.run_dir)


@pytest.mark.parametrize("padding", [(1, 1, 1, 1), (3, 3, 3, 3), (2, 0, 1, 3)])
def test_sliced_reflection_padding_is_reflection_padding(padding: tuple[int, int, int, int]) -> None:
    x = torch.randn(2, 3, 7, 9, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    native, sliced = nn.ReflectionPad2d(padding)(x), SlicedReflectionPad2d(padding)(y)
    assert torch.equal(native, sliced)
    weight = torch.randn_like(native)
    (native * weight).sum().backward()
    (sliced * weight).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=1e-6)


def test_deterministic_padding_keeps_the_generator() -> None:
    torch.manual_seed(0)
    net = build_generator(GeneratorSpec(ngf=4, n_blocks=2))
    keys = list(net.state_dict())
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        before = net(x)
    assert use_deterministic_padding(net) == 2 + 2 * 2  # the two 7×7 pads and two per residual block
    assert list(net.state_dict()) == keys and not any(type(m) is nn.ReflectionPad2d for m in net.modules())
    with torch.no_grad():
        assert torch.equal(net(x), before)


def test_resume_warns_when_it_cannot_be_bit_for_bit() -> None:
    cpu = {"torch": "2.13.0", "device": "cpu", "deterministic": False}
    assert explain_resume(cpu, cpu) is None
    assert explain_resume(cpu, {**cpu, "deterministic": True}) is None  # no difference on the CPU
    assert explain_resume(None, cpu) is None  # a run saved before environments were recorded
    line = explain_resume(cpu, {**cpu, "torch": "2.14.0"})
    assert line is not None and "torch 2.13.0 → 2.14.0" in line and "not bit for bit" in line
    gpu = {"torch": "2.13.0", "device": "cuda", "deterministic": True, "gpu": "NVIDIA H200", "cuda": "12.8",
           "driver": "570.1"}
    assert explain_resume(gpu, gpu) is None
    assert "gpu NVIDIA H200 → NVIDIA A100" in (explain_resume(gpu, {**gpu, "gpu": "NVIDIA A100"}) or "")
    loose = {**gpu, "deterministic": False}
    assert "without --deterministic" in (explain_resume(loose, loose) or "")


def test_resuming_on_another_torch_says_so(tiny: Callable[..., TrainOptions], caplog: pytest.LogCaptureFixture) -> None:
    run = train(tiny("run", epochs=1, epochs_decay=0, max_iters=2)).run_dir
    state = load_state(run / "state.pt")
    state["environment"]["torch"] = "1.0.0"
    save_state(run / "state.pt", {k: v for k, v in state.items() if k != "format"})
    with caplog.at_level("WARNING", logger="cyclestream.trainer"):
        assert train(tiny("run", epochs=1, epochs_decay=0, resume=True)).finished
    assert any(f"torch 1.0.0 → {torch.__version__}" in m for m in caplog.messages)


@pytest.mark.gpu
@needs_cuda
def test_deterministic_cuda_resume_is_bit_for_bit(tiny: Callable[..., TrainOptions]) -> None:
    # Reflection padding (the default) included: its native CUDA backward is refused in deterministic mode.
    opts = {"device": "cuda", "deterministic": True}
    straight = train(tiny("straight", **opts))
    with pytest.raises(Killed):
        train(tiny("split", save_every_iters=4, **opts), on_iteration=kill_at(11))  # resumes at iteration 8
    resumed = train(tiny("split", resume=True, save_every_iters=4, **opts))
    assert resumed.finished and load_state(resumed.run_dir / "state.pt")["environment"]["gpu"]
    assert_same_runs(straight.run_dir, resumed.run_dir)
