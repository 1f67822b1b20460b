"""The training steps optimise the official objective.

The trainer's CycleGAN and pix2pix steps and an independent re-implementation of the official
``optimize_parameters`` (official_reference.py) start from the same weights and see the same batches;
after a few steps on the CPU every parameter, buffer (batch-norm statistics), Adam moment and logged
loss must agree.  Adam's moments pin the gradients themselves (its update hardly changes when a whole
loss is scaled, so a D loss left unhalved would otherwise slip through), and the losses pin what each
term is weighted by.  Unequal λ_A and λ_B pin which weight goes with which cycle and identity term.

The image pools must draw the same numbers: the trainer's pool draws from its own ``torch.Generator``
(so its state is saved with the run), the official one from Python's ``random``.  The reference's pools
are given :class:`TorchDraws`: ``uniform(0, 1)`` and ``randint(0, n - 1)`` answered from a copy of the
trainer pool's generator, one ``torch.rand(())`` and one ``torch.randint(0, n, ())`` each, which is how
the trainer's pool turns its generator into the official draws.  Dropout (pix2pix) draws from torch's
global generator, seeded the same before each side's steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from cyclestream.engine.models import build_generator
from cyclestream.trainer.cyclegan import CycleGANTask
from cyclestream.trainer.networks import NLayerDiscriminator
from cyclestream.trainer.options import TrainOptions
from cyclestream.trainer.pix2pix import Pix2PixTask
from cyclestream.trainer.task import Runtime, Task
from tests.trainer.official_reference import CycleGANModel, Pix2PixModel

CPU = Runtime(torch.device("cpu"))


class TorchDraws:
    """``random.Random``'s ``uniform`` and ``randint`` (inclusive), drawn from a torch generator that
    starts in ``state``."""

    def __init__(self, state: torch.Tensor) -> None:
        self.generator = torch.Generator()
        self.generator.set_state(state.clone())

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * float(torch.rand((), generator=self.generator).item())

    def randint(self, a: int, b: int) -> int:
        return int(torch.randint(a, b + 1, (), generator=self.generator).item())


def batches(steps: int, batch: int, size: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [{k: torch.rand(batch, 3, size, size, generator=g) * 2 - 1 for k in ("A", "B")} for _ in range(steps)]


def copy_of(net: nn.Module, fresh: nn.Module) -> nn.Module:
    """``fresh`` (a new instance of the same class) holding ``net``'s current weights and buffers."""
    fresh.load_state_dict(net.state_dict())
    return fresh.train()


def run_both(task: Task, reference: Any, data: list[dict[str, torch.Tensor]],
             seed: int = 1234) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    torch.manual_seed(seed)
    got = [task.step(batch) for batch in data]
    torch.manual_seed(seed)
    want = []
    for batch in data:
        reference.set_input(batch)
        reference.optimize_parameters()
        want.append(reference.get_current_losses())
    return got, want


def assert_close(a: torch.Tensor, b: torch.Tensor, where: str, rtol: float = 1e-6, atol: float = 1e-7) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype, where
    if a.is_floating_point():
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{where}: {m}")
    else:
        assert torch.equal(a, b), where


def assert_same_training(task: Task, nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                         got: list[dict[str, float]], want: list[dict[str, float]]) -> None:
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.keys() == w.keys()
        for name in g:
            assert float(g[name]) == pytest.approx(w[name], rel=1e-6, abs=1e-7), f"step {step + 1}: loss {name}"
    for name, ref in nets.items():
        mine = task.nets[name].state_dict()
        for key, value in ref.state_dict().items():
            assert_close(mine[key], value, f"{name}.{key}")
    assert_same_adam_moments(task, optimizers)


def assert_same_adam_moments(task: Task, optimizers: dict[str, torch.optim.Optimizer], rtol: float = 1e-6,
                             atol: float = 1e-7) -> None:
    """Each of the task's optimisers holds the reference's Adam moments, parameter by parameter."""
    for name, ref_opt in optimizers.items():
        opt = task.optimizers[name]
        params = [p for group in opt.param_groups for p in group["params"]]
        ref_params = [p for group in ref_opt.param_groups for p in group["params"]]
        assert len(params) == len(ref_params)
        for i, (p, q) in enumerate(zip(params, ref_params, strict=True)):
            for moment in ("exp_avg", "exp_avg_sq"):
                assert_close(opt.state[p][moment], ref_opt.state[q][moment], f"optimizer {name}[{i}].{moment}",
                             rtol, atol)


@pytest.mark.parametrize(("gan_mode", "batch", "lambda_identity", "steps"),
                         [("lsgan", 1, 0.5, 6), ("vanilla", 2, 0.0, 4)])
def test_cyclegan_step_is_the_official_optimize_parameters(
        tiny: Callable[..., TrainOptions], gan_mode: str, batch: int, lambda_identity: float, steps: int) -> None:
    opts = tiny("objective", load_size=32, crop_size=32, ngf=8, n_blocks=2, ndf=8, n_layers_d=2, pool_size=2,
                gan_mode=gan_mode, lambda_a=10.0, lambda_b=6.0, lambda_identity=lambda_identity,
                batch_size=batch).resolved()
    task = CycleGANTask(opts, CPU)
    task.wrap()
    m = opts.model
    nets = {n: copy_of(task.nets[n], build_generator(task.spec)) for n in ("G_A", "G_B")}
    nets.update({n: copy_of(task.nets[n], NLayerDiscriminator(3, m.ndf, m.n_layers_d, str(m.norm)))
                 for n in ("D_A", "D_B")})
    draws = (TorchDraws(task.pools["fake_A"].generator.get_state()),
             TorchDraws(task.pools["fake_B"].generator.get_state()))
    reference = CycleGANModel(nets["G_A"], nets["G_B"], nets["D_A"], nets["D_B"], lr=opts.optim.lr,
                              beta1=opts.optim.beta1, gan_mode=gan_mode, lambda_A=m.lambda_a, lambda_B=m.lambda_b,
                              lambda_identity=m.lambda_identity, pool_size=int(m.pool_size or 0), pool_draws=draws)
    got, want = run_both(task, reference, batches(steps, batch, 32))
    # Both pools handed back stored images (so a pool left out would show), the trainer's in the same draws.
    assert reference.fake_A_pool.swaps > 0 and reference.fake_B_pool.swaps > 0
    assert_same_training(task, nets, {"G": reference.optimizer_G, "D": reference.optimizer_D}, got, want)


@pytest.mark.parametrize(("batch", "pool_size"), [(1, 0), (2, 2)])
def test_pix2pix_step_is_the_official_optimize_parameters(
        tiny_pix2pix: Callable[..., TrainOptions], batch: int, pool_size: int) -> None:
    # The official recipe: U-Net with dropout and batch norm, vanilla GAN, λ_L1 100, no pool; and with a pool.
    opts = tiny_pix2pix("objective", batch_size=batch, pool_size=pool_size).resolved()
    assert opts.model.norm == "batch" and opts.model.gan_mode == "vanilla"
    task = Pix2PixTask(opts, CPU)
    task.wrap()
    assert any(isinstance(layer, nn.Dropout) for layer in task.nets["G"].modules())  # the RNG matters
    m = opts.model
    nets = {"G": copy_of(task.nets["G"], build_generator(task.spec)),
            "D": copy_of(task.nets["D"], NLayerDiscriminator(6, m.ndf, m.n_layers_d, str(m.norm)))}
    draws = TorchDraws(task.pools["fake_AB"].generator.get_state()) if pool_size else None
    reference = Pix2PixModel(nets["G"], nets["D"], lr=opts.optim.lr, beta1=opts.optim.beta1,
                             gan_mode=str(m.gan_mode), lambda_L1=m.lambda_l1, pool_size=pool_size, pool_draws=draws)
    got, want = run_both(task, reference, batches(4, batch, 64))
    if pool_size:
        assert reference.fake_AB_pool.swaps > 0
    assert_same_training(task, nets, {"G": reference.optimizer_G, "D": reference.optimizer_D}, got, want)
