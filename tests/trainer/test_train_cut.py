"""CUT and FastCUT train with the reference recipe: their step is the reference ``optimize_parameters``
(tests/trainer/cut_reference.py) loss for loss, weight for weight and Adam moment for Adam moment; a run
resumes bit for bit; ``cyclestream train --model cut|fastcut`` writes a model ``translate`` and ``info``
read, its samples and its loss plot."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cyclestream.cli import main
from cyclestream.engine.checkpoint import load_model
from cyclestream.trainer.cut import CUTTask, feature_channels
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import TrainOptions
from tests.engine.models.test_cut_family import reference_generator
from tests.trainer.cut_reference import CUTModel, PatchSampleF, reference_discriminator
from tests.trainer.helpers import Killed, assert_same_runs, kill_at
from tests.trainer.test_train_objective import CPU, assert_close, assert_same_adam_moments, batches


class Coin:
    """The reference's FastCUT coin, drawn as the trainer draws it (one ``torch.rand(())``), remembered."""

    def __init__(self) -> None:
        self.tosses: list[bool] = []

    def __call__(self) -> float:
        value = float(torch.rand(()).item())
        self.tosses.append(value < 0.5)
        return value


def loaded(net: torch.nn.Module, state: dict[str, torch.Tensor], prefix: str = "") -> torch.nn.Module:
    net.load_state_dict({k.removeprefix(prefix): v for k, v in state.items()})
    return net.train()


@pytest.mark.parametrize(("model", "batch", "steps"), [("cut", 1, 3), ("fastcut", 2, 4)])
def test_the_step_is_the_reference_optimize_parameters(
    tiny: Callable[..., TrainOptions], model: str, batch: int, steps: int
) -> None:
    opts = tiny(
        "objective",
        model=model,
        load_size=24,
        crop_size=24,
        ngf=4,
        n_blocks=5,
        ndf=4,
        n_layers_d=2,
        num_patches=32,
        netf_nc=16,
        batch_size=batch,
        lambda_gan=0.7,
        pool_size=None,
    ).resolved()
    m, o = opts.model, opts.optim
    torch.manual_seed(0)  # the initial weights
    task = CUTTask(opts, CPU)
    task.wrap()
    layers = [0, 4, 8, 12, 16]  # the reference's --nce_layers
    nets = {
        "G": loaded(reference_generator(4, 5), task.nets["G"].state_dict(), "model."),
        "D": loaded(reference_discriminator(3, 4, 2), task.nets["D"].state_dict(), "model."),
        "F": loaded(
            PatchSampleF(feature_channels(task.spec, tuple(layers)), 16, torch.randperm), task.nets["F"].state_dict()
        ),
    }
    coin = Coin()
    fast = model == "fastcut"
    reference = CUTModel(
        nets["G"],
        nets["F"],
        nets["D"],
        coin=coin,
        lr=o.lr,
        beta1=o.beta1,
        beta2=o.beta2,
        gan_mode="lsgan",
        lambda_GAN=0.7,
        lambda_NCE=10.0 if fast else 1.0,
        nce_idt=not fast,
        nce_layers=layers,
        num_patches=32,
        nce_T=0.07,
        flip_equivariance=fast,
        batch_size=batch,
    )
    assert (m.gan_mode, m.pool_size, o.epochs, o.epochs_decay) == ("lsgan", 0, 2, 1)  # tiny's epochs
    data = batches(steps, batch, 24)
    torch.manual_seed(99)
    got = [task.step(b) for b in data]
    torch.manual_seed(99)
    want = []
    for b in data:
        reference.set_input(b)
        reference.optimize_parameters()
        want.append(reference.get_current_losses())
    if fast:
        assert set(coin.tosses) == {True, False}  # flipped and unflipped steps both ran
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.keys() == w.keys() and all(torch.isfinite(torch.tensor(v)) for v in w.values())
        for name in g:
            assert float(g[name]) == pytest.approx(w[name], rel=1e-5, abs=1e-6), f"step {step + 1}: loss {name}"
    for name, ref in nets.items():
        mine = task.nets[name].state_dict()
        prefix = "" if name == "F" else "model."
        for key, value in ref.state_dict().items():
            assert_close(mine[prefix + key], value, f"{name}.{key}")
    optimizers = {"G": reference.optimizer_G, "D": reference.optimizer_D, "F": reference.optimizer_F}
    assert_same_adam_moments(task, optimizers, rtol=1e-5, atol=1e-8)


def test_the_recipes_of_cut_and_fastcut(tiny: Callable[..., TrainOptions]) -> None:
    cut = CUTTask(tiny("cut", model="cut", pool_size=None, epochs=None, epochs_decay=None).resolved(), CPU)
    fast = CUTTask(tiny("fast", model="fastcut", pool_size=None, epochs=None, epochs_decay=None).resolved(), CPU)
    for task, (lambda_nce, idt, flip, epochs) in (
        (cut, (1.0, True, False, (200, 200))),
        (fast, (10.0, False, True, (150, 50))),
    ):
        s, o = task.nce, task.options.optim
        assert (s.lambda_nce, s.nce_idt, s.flip_equivariance, (o.epochs, o.epochs_decay)) == (
            lambda_nce,
            idt,
            flip,
            epochs,
        )
        assert (s.layers, s.num_patches, s.temperature, s.lambda_gan) == ((0, 4, 8, 12, 16), 256, 0.07, 1.0)
        assert (task.options.model.pool_size, o.lr, o.beta1) == (0, 2e-4, 0.5)
        assert set(task.optimizers) == {"G", "D", "F"}
    assert "NCE_Y" in cut.losses and "NCE_Y" not in fast.losses


def test_a_resumed_run_is_bit_identical(tiny: Callable[..., TrainOptions]) -> None:
    small = {"model": "fastcut", "pool_size": None, "num_patches": 8, "netf_nc": 16, "epochs": 1, "epochs_decay": 1}
    ref = train(tiny("reference", **small))
    assert ref.finished and ref.position.iteration == 12
    with pytest.raises(Killed):
        train(tiny("killed", save_every_iters=4, **small), on_iteration=kill_at(9))
    result = train(tiny("killed", resume=True, save_every_iters=4, **small))
    assert result.finished
    assert_same_runs(ref.run_dir, result.run_dir)


def test_train_on_the_command_line_then_translate_and_info(
    tmp_path: Path, unpaired: tuple[Path, Path], make_clip: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = unpaired
    out = tmp_path / "run"
    assert (
        main(
            [
                "-q",
                "train",
                "--model",
                "cut",
                "--data-a",
                str(a),
                "--data-b",
                str(b),
                "--out",
                str(out),
                "--ngf",
                "4",
                "--n-blocks",
                "1",
                "--ndf",
                "4",
                "--n-layers-d",
                "2",
                "--load-size",
                "20",
                "--crop-size",
                "16",
                "--epochs",
                "1",
                "--epochs-decay",
                "0",
                "--num-patches",
                "8",
                "--netf-nc",
                "4",
                "--threads",
                "1",
                "--samples",
                "2",
            ]
        )
        == 0
    )
    assert (out / "G.safetensors").is_file() and (out / "losses.png").is_file()
    assert list((out / "samples").glob("*.png"))
    assert not list(out.glob("*.tmp*"))
    model = load_model(out / "G.safetensors")
    assert model.family.name == "cut" and model.metadata["input_domain"] == "A"
    capsys.readouterr()
    assert main(["info", str(out / "G.safetensors"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "cut" and info["generator"]["antialias"] is True
    video = tmp_path / "out.mkv"
    assert (
        main(
            [
                "-q",
                "translate",
                str(make_clip("in.mkv", width=24, height=20, frames=2)),
                str(video),
                "--model",
                str(out / "G.safetensors"),
                "--temporal",
                "off",
                "--backend",
                "eager",
            ]
        )
        == 0
    )
    assert video.stat().st_size > 0
