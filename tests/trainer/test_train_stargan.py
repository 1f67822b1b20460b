"""``--model stargan``: the step is yunjey/stargan's (``solver.py`` ``train``, softmax domains), checked
against an independent re-implementation of that step from the same weights and batches; a run on three
domain folders trains, resumes bit for bit and writes a model file that loads with its domains."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cyclestream.engine.checkpoint import load_model
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import DataOptions, ModelOptions, OptimOptions, TrainOptions
from cyclestream.trainer.stargan import StarGANTask
from cyclestream.trainer.task import Runtime
from tests.engine.official_conditioned import StarGenerator
from tests.trainer.helpers import Killed, assert_same_runs, kill_at, override, quiet_run

CPU = Runtime(torch.device("cpu"))
DOMAINS = ("noto", "openmoji", "twemoji")


@pytest.fixture
def tiny_stargan(tmp_path: Path) -> Callable[..., TrainOptions]:
    """Three domain folders of three 16 px images; ngf 4, one block, batch 2, n_critic 2."""
    rng = np.random.default_rng(0)
    for d in DOMAINS:
        (tmp_path / "data" / d).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "data" / d / f"{i}.png")

    def make(out: str = "run", **overrides: Any) -> TrainOptions:
        opts = TrainOptions(
            data=DataOptions(dataroot=tmp_path / "data", load_size=18, crop_size=16),
            model=ModelOptions(model="stargan", ngf=4, n_blocks=1, ndf=4, n_critic=2),
            optim=OptimOptions(epochs=1, epochs_decay=1, batch_size=2),
            run=quiet_run(tmp_path / out, samples=1, precision="fp32"),
        )
        return override(opts, **overrides)

    return make


class ReferenceD(nn.Module):
    """The reference ``Discriminator``: stride-2 4×4 convolutions with LeakyReLU(0.01); conv1, conv2."""

    def __init__(self, image_size: int, conv_dim: int, c_dim: int, repeat_num: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, conv_dim, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.01)]
        d = conv_dim
        for _ in range(1, repeat_num):
            layers += [nn.Conv2d(d, d * 2, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.01)]
            d *= 2
        self.main = nn.Sequential(*layers)
        self.conv1 = nn.Conv2d(d, 1, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(d, c_dim, kernel_size=image_size // 2**repeat_num, bias=False)

    def forward(self, x):
        h = self.main(x)
        out_cls = self.conv2(h)
        return self.conv1(h), out_cls.view(out_cls.size(0), out_cls.size(1))


class ReferenceSolver:
    """The reference's iteration ``i`` (0-based) of ``Solver.train`` for RaFD-style labels, the target
    labels handed in instead of drawn."""

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        lr: float,
        beta1: float,
        beta2: float,
        c_dim: int,
        lambda_cls: float,
        lambda_rec: float,
        lambda_gp: float,
        n_critic: int,
    ) -> None:
        self.G, self.D, self.c_dim = G, D, c_dim
        self.g_optimizer = torch.optim.Adam(G.parameters(), lr, [beta1, beta2])
        self.d_optimizer = torch.optim.Adam(D.parameters(), lr, [beta1, beta2])
        self.lambda_cls, self.lambda_rec, self.lambda_gp, self.n_critic = lambda_cls, lambda_rec, lambda_gp, n_critic

    def gradient_penalty(self, y, x):
        dydx = torch.autograd.grad(
            outputs=y,
            inputs=x,
            grad_outputs=torch.ones(y.size()),
            retain_graph=True,
            create_graph=True,
            only_inputs=True,
        )[0]
        dydx = dydx.view(dydx.size(0), -1)
        return torch.mean((torch.sqrt(torch.sum(dydx**2, dim=1)) - 1) ** 2)

    def label2onehot(self, labels):
        out = torch.zeros(labels.size(0), self.c_dim)
        out[np.arange(labels.size(0)), labels.long()] = 1
        return out

    def iteration(self, i: int, x_real, label_org, label_trg) -> dict[str, float]:
        c_org, c_trg = self.label2onehot(label_org), self.label2onehot(label_trg)
        out_src, out_cls = self.D(x_real)
        d_loss_real = -torch.mean(out_src)
        d_loss_cls = F.cross_entropy(out_cls, label_org)
        x_fake = self.G(x_real, c_trg)
        out_src, out_cls = self.D(x_fake.detach())
        d_loss_fake = torch.mean(out_src)
        alpha = torch.rand(x_real.size(0), 1, 1, 1)
        x_hat = (alpha * x_real.data + (1 - alpha) * x_fake.data).requires_grad_(True)
        out_src, _ = self.D(x_hat)
        d_loss_gp = self.gradient_penalty(out_src, x_hat)
        d_loss = d_loss_real + d_loss_fake + self.lambda_cls * d_loss_cls + self.lambda_gp * d_loss_gp
        self.g_optimizer.zero_grad()
        self.d_optimizer.zero_grad()
        d_loss.backward()
        self.d_optimizer.step()
        loss = {
            "D_real": d_loss_real.item(),
            "D_fake": d_loss_fake.item(),
            "D_cls": d_loss_cls.item(),
            "D_gp": d_loss_gp.item(),
        }
        if (i + 1) % self.n_critic == 0:
            x_fake = self.G(x_real, c_trg)
            out_src, out_cls = self.D(x_fake)
            g_loss_fake = -torch.mean(out_src)
            g_loss_cls = F.cross_entropy(out_cls, label_trg)
            g_loss_rec = torch.mean(torch.abs(x_real - self.G(x_fake, c_org)))
            g_loss = g_loss_fake + self.lambda_rec * g_loss_rec + self.lambda_cls * g_loss_cls
            self.g_optimizer.zero_grad()
            self.d_optimizer.zero_grad()
            g_loss.backward()
            self.g_optimizer.step()
            loss.update({"G_fake": g_loss_fake.item(), "G_rec": g_loss_rec.item(), "G_cls": g_loss_cls.item()})
        return loss


def test_the_stargan_step_is_the_reference_solver_iteration(tiny_stargan: Callable[..., TrainOptions]) -> None:
    opts = tiny_stargan("objective", lambda_cls=0.7, lambda_rec=6.0, lambda_gp=3.0).resolved()
    task = StarGANTask(opts, CPU)
    task.wrap()
    m, o = opts.model, opts.optim
    G = StarGenerator(conv_dim=4, c_dim=3, repeat_num=1)
    G.load_state_dict(task.nets["G"].state_dict(), strict=False)  # its running statistics are never used
    D = ReferenceD(16, 4, 3, 3)
    D.load_state_dict(task.nets["D"].state_dict())
    ref = ReferenceSolver(
        G.train(), D.train(), o.lr, o.beta1, o.beta2, 3, m.lambda_cls, m.lambda_rec, m.lambda_gp, m.n_critic
    )
    gen = torch.Generator().manual_seed(5)
    data = [
        {
            "image": torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1,
            "label": torch.randint(0, 3, (2,), generator=gen),
            "target": torch.randint(0, 3, (2,), generator=gen),
        }
        for _ in range(4)
    ]
    torch.manual_seed(9)
    got = [task.step(b) for b in data]
    torch.manual_seed(9)
    want = [ref.iteration(i, b["image"], b["label"], b["target"]) for i, b in enumerate(data)]
    assert [sorted(g) for g in got] == [sorted(w) for w in want] and "G_rec" in got[1]
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        for name in w:
            assert float(g[name]) == pytest.approx(w[name], rel=1e-5, abs=1e-6), f"step {step + 1}: {name}"
    for name, net in (("G", G), ("D", D)):
        mine = task.nets[name].state_dict()
        for key, value in net.state_dict().items():
            if key in mine:
                torch.testing.assert_close(mine[key], value, rtol=1e-5, atol=1e-6, msg=lambda s, k=key: f"{k}: {s}")
    for name, ref_opt in (("G", ref.g_optimizer), ("D", ref.d_optimizer)):
        params = [p for group in task.optimizers[name].param_groups for p in group["params"]]
        ref_params = [p for group in ref_opt.param_groups for p in group["params"]]
        for p, q in zip(params, ref_params, strict=True):
            torch.testing.assert_close(
                task.optimizers[name].state[p]["exp_avg_sq"], ref_opt.state[q]["exp_avg_sq"], rtol=1e-4, atol=1e-10
            )


def test_a_stargan_run_resumes_bit_for_bit_and_its_file_names_the_domains(
    tiny_stargan: Callable[..., TrainOptions],
) -> None:
    reference = train(tiny_stargan("reference")).run_dir
    with pytest.raises(Killed):
        train(tiny_stargan("killed", save_every_iters=3), on_iteration=kill_at(5))
    result = train(tiny_stargan("killed", resume=True, save_every_iters=3))
    assert result.finished
    assert_same_runs(reference, result.run_dir)
    model = load_model(reference / "G.safetensors")
    assert model.family.name == "stargan" and model.metadata["domains"] == list(DOMAINS)
    assert (reference / "samples").is_dir()
