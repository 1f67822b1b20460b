"""``--model stylegan2``: rosinality/stylegan2-pytorch's ``train.py`` recipe.

``RefDiscriminator`` is that project's ``model.py`` Discriminator written out again here (ConvLayer,
ResBlock, the minibatch standard deviation), with the channel table given; the generator reference is
tests/engine/models/test_stylegan2.py's.  ``reference_iteration`` is one pass of ``train.py``'s loop
(logistic D loss, R1 every ``d_reg_every``, non-saturating G loss, path-length penalty every
``g_reg_every``, accumulate into g_ema), with its Adam settings.  A task's first iteration (both penalties
run at i = 0) must leave every network where the reference leaves it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import autograd, nn

from cyclestream.cli import main
from cyclestream.engine.checkpoint import load_model
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import DataOptions, ModelOptions, OptimOptions, TrainingError, TrainOptions
from cyclestream.trainer.stylegan2 import StyleGAN2Task
from cyclestream.trainer.stylegan2_networks import StyleGAN2Discriminator
from cyclestream.trainer.task import Runtime
from tests.engine.models.test_stylegan2 import (
    N_MLP,
    STYLE_DIM,
    RefEqualLinear,
    ReferenceGenerator,
    ref_kernel,
    ref_lrelu,
    ref_upfirdn2d,
)
from tests.trainer.helpers import Killed, assert_same_runs, kill_at, override, quiet_run

CPU = Runtime(torch.device("cpu"))
SIZE = 16
NGF = 16  # the published 512 at 4..32 px, scaled by 16/512: 16 channels everywhere


# ----------------------------------------------------------------------------- the reference, written out


class RefEqualConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.scale = 1 / math.sqrt(cin * k**2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class RefBlurDown(nn.Module):
    def __init__(self, pad: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("kernel", ref_kernel())
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ref_upfirdn2d(x, self.kernel, pad=self.pad)


class RefFusedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ref_lrelu(x, self.bias)


class RefConvLayer(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, downsample: bool = False, bias: bool = True,
                 activate: bool = True) -> None:  # fmt: skip
        layers: list[nn.Module] = []
        if downsample:
            p = (4 - 2) + (k - 1)
            layers.append(RefBlurDown(((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, k // 2
        layers.append(RefEqualConv2d(cin, cout, k, padding=padding, stride=stride, bias=bias and not activate))
        if activate:
            layers.append(RefFusedLeakyReLU(cout))
        super().__init__(*layers)


class RefResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = RefConvLayer(cin, cin, 3)
        self.conv2 = RefConvLayer(cin, cout, 3, downsample=True)
        self.skip = RefConvLayer(cin, cout, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class RefDiscriminator(nn.Module):
    def __init__(self, size: int, channels: dict[int, int]) -> None:
        super().__init__()
        convs: list[nn.Module] = [RefConvLayer(3, channels[size], 1)]
        in_channel = channels[size]
        for i in range(int(math.log(size, 2)), 2, -1):
            out_channel = channels[2 ** (i - 1)]
            convs.append(RefResBlock(in_channel, out_channel))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)
        self.stddev_group, self.stddev_feat = 4, 1
        self.final_conv = RefConvLayer(in_channel + 1, channels[4], 3)
        self.final_linear = nn.Sequential(RefEqualLinear(channels[4] * 4 * 4, channels[4], act=True),
                                          RefEqualLinear(channels[4], 1))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        batch, channel, height, width = out.shape
        group = min(batch, self.stddev_group)
        stddev = out.view(group, -1, self.stddev_feat, channel // self.stddev_feat, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdims=True).squeeze(2)
        stddev = stddev.repeat(group, 1, height, width)
        out = self.final_conv(torch.cat([out, stddev], 1))
        return self.final_linear(out.view(batch, -1))


def requires_grad(model: nn.Module, flag: bool) -> None:
    for p in model.parameters():
        p.requires_grad = flag


def reference_iteration(i: int, real: torch.Tensor, g: nn.Module, d: nn.Module, g_ema: nn.Module,
                        g_optim: torch.optim.Optimizer, d_optim: torch.optim.Optimizer, args: Any,
                        mean_path_length: float) -> float:  # fmt: skip
    """One pass of train.py's loop (no augmentation, no mixing: ``--mixing 0``)."""
    requires_grad(g, False)
    requires_grad(d, True)
    fake_img, _ = g(torch.randn(args.batch, STYLE_DIM), randomize_noise=True)
    fake_pred, real_pred = d(fake_img), d(real)
    d_loss = F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()
    d.zero_grad()
    d_loss.backward()
    d_optim.step()
    if i % args.d_reg_every == 0:
        real.requires_grad = True
        real_pred = d(real)
        (grad_real,) = autograd.grad(outputs=real_pred.sum(), inputs=real, create_graph=True)
        r1_loss = grad_real.pow(2).reshape(grad_real.shape[0], -1).sum(1).mean()
        d.zero_grad()
        (args.r1 / 2 * r1_loss * args.d_reg_every + 0 * real_pred[0]).backward()
        d_optim.step()
    requires_grad(g, True)
    requires_grad(d, False)
    fake_img, _ = g(torch.randn(args.batch, STYLE_DIM), randomize_noise=True)
    g_loss = F.softplus(-d(fake_img)).mean()
    g.zero_grad()
    g_loss.backward()
    g_optim.step()
    if i % args.g_reg_every == 0:
        fake_img, latents = g(torch.randn(max(1, args.batch // 2), STYLE_DIM), randomize_noise=True)
        noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
        (grad,) = autograd.grad(outputs=(fake_img * noise).sum(), inputs=latents, create_graph=True)
        path_lengths = torch.sqrt(grad.pow(2).sum(2).mean(1))
        path_mean = mean_path_length + 0.01 * (path_lengths.mean() - mean_path_length)
        path_loss = (path_lengths - path_mean).pow(2).mean()
        g.zero_grad()
        (args.path_regularize * args.g_reg_every * path_loss + 0 * fake_img[0, 0, 0, 0]).backward()
        g_optim.step()
        mean_path_length = float(path_mean.detach())
    accum = 0.5 ** (32 / (10 * 1000))
    par1, par2 = dict(g_ema.named_parameters()), dict(g.named_parameters())
    for k in par1:
        par1[k].data.mul_(accum).add_(par2[k].data, alpha=1 - accum)
    return mean_path_length


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def options(images: Path, out: Path, **overrides: Any) -> TrainOptions:
    opts = TrainOptions(
        data=DataOptions(data=images, load_size=SIZE, crop_size=SIZE),
        model=ModelOptions(model="stylegan2", ngf=NGF, latent=STYLE_DIM, n_mlp=N_MLP),
        optim=OptimOptions(epochs=2, batch_size=4),
        run=quiet_run(out, samples=1, precision="fp32", compile="off", channels_last="off"),
    )
    return override(opts, **overrides)


@pytest.fixture
def run_options(images: Path, tmp_path: Path) -> Callable[..., TrainOptions]:
    return lambda out="run", **overrides: options(images, tmp_path / out, **overrides)


# ----------------------------------------------------------------------------- tests


def test_the_discriminator_has_the_reference_layout_and_logits() -> None:
    table = {4: 8, 8: 6, 16: 4}
    torch.manual_seed(0)
    ref = RefDiscriminator(16, table)
    for name, p in ref.named_parameters():  # trained-looking biases
        if name.endswith("bias"):
            nn.init.normal_(p, 0.0, 0.2)
    ours = StyleGAN2Discriminator((8, 6, 4))
    ours.load_state_dict(ref.state_dict())  # strict: the same keys and shapes
    for batch in (4, 8, 2):
        x = torch.randn(batch, 3, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    # an epoch's last batch of 9 (the reference's loader drops it; its groups of 4 do not divide it): groups of 3
    x = torch.randn(9, 3, 16, 16)
    with torch.no_grad():
        ref.stddev_group = 3
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_the_first_iteration_is_the_references(run_options: Callable[..., TrainOptions]) -> None:
    """Iteration 0 runs everything: D, R1, G, the path-length penalty, the average."""
    opts = run_options(mixing=0.0).resolved()
    m, o = opts.model, opts.optim
    task = StyleGAN2Task(opts, CPU)
    task.wrap()
    channels = dict(zip((4, 8, 16), task.spec.channels, strict=True))
    g, g_ema = ReferenceGenerator(SIZE, channels), ReferenceGenerator(SIZE, channels)
    d = RefDiscriminator(SIZE, channels)
    g.load_state_dict(task.nets["G"].state_dict())
    with torch.no_grad():  # an average that has drifted from G, so one update of it moves it measurably
        for p in task.nets["G_ema"].parameters():
            p.add_(torch.randn_like(p), alpha=0.1)
    g_ema.load_state_dict(task.nets["G_ema"].state_dict())
    d.load_state_dict(task.nets["D"].state_dict())
    g_ratio, d_ratio = m.g_reg_every / (m.g_reg_every + 1), m.d_reg_every / (m.d_reg_every + 1)
    assert (o.lr, o.beta1, o.beta2) == (0.002, 0.0, 0.99)
    for name, ratio in (("G", g_ratio), ("D", d_ratio)):  # train.py's Adam settings
        group = task.optimizers[name].param_groups[0]
        assert group["lr"] == pytest.approx(0.002 * ratio) and group["betas"] == pytest.approx((0.0, 0.99**ratio))
    # Adam's first step, g/|g|, turns rounding in gradients of ~1e-9 into whole steps: the weights are
    # compared after plain SGD at the same rates, which carries every gradient through unchanged.
    task.optimizers = {"G": torch.optim.SGD(task.nets["G"].parameters(), lr=0.002 * g_ratio),
                       "D": torch.optim.SGD(task.nets["D"].parameters(), lr=0.002 * d_ratio)}  # fmt: skip
    g_optim = torch.optim.SGD(g.parameters(), lr=0.002 * g_ratio)
    d_optim = torch.optim.SGD(d.parameters(), lr=0.002 * d_ratio)
    args = type("Args", (), {"batch": 4, "d_reg_every": m.d_reg_every, "g_reg_every": m.g_reg_every, "r1": m.r1,
                             "path_regularize": m.path_regularize})  # fmt: skip
    real = torch.rand(4, 3, SIZE, SIZE) * 2 - 1
    before = {name: {k: v.clone() for k, v in task.nets[name].state_dict().items()} for name in ("G", "D", "G_ema")}

    torch.manual_seed(11)
    losses = task.step({"image": real.clone()})
    torch.manual_seed(11)
    mean_path = reference_iteration(0, real.clone(), g, d, g_ema, g_optim, d_optim, args, 0.0)

    assert {"D", "G", "R1", "path"} <= set(losses)
    for name, ref in (("G", g), ("D", d), ("G_ema", g_ema)):  # each weight's change, to a few fp32 ulps
        got = task.nets[name].state_dict()
        for k, v in ref.state_dict().items():
            start = before[name][k]
            ulps = 4 * torch.finfo(torch.float32).eps * float(start.abs().max())
            torch.testing.assert_close(got[k] - start, v - start, atol=ulps, rtol=1e-3,
                                       msg=lambda detail, at=f"{name}.{k}": f"{at}: {detail}")  # fmt: skip
    assert float(task.mean_path_length) == pytest.approx(mean_path, rel=1e-5)


def test_a_run_trains_resumes_bit_for_bit_and_generate_walks_it(
    run_options: Callable[..., TrainOptions], tmp_path: Path
) -> None:
    reference = train(run_options("reference")).run_dir
    with pytest.raises(Killed):
        train(run_options("killed", save_every_iters=1), on_iteration=kill_at(2))
    result = train(run_options("killed", resume=True, save_every_iters=1))
    assert result.finished
    assert_same_runs(reference, result.run_dir)
    model = load_model(reference / "G.safetensors")
    assert model.family.name == "stylegan2" and model.spec.size == SIZE
    assert model.generator.mean_latent is not None and model.generator.mean_latent.shape == (1, STYLE_DIM)
    assert (reference / "samples" / "epoch_002.png").is_file() and (reference / "losses.png").is_file()
    assert main(["-q", "generate", str(reference / "G.safetensors"), "--walk", "0.2", "--fps", "10",
                 "--out", str(tmp_path / "walk.mp4")]) == 0  # fmt: skip
    assert (tmp_path / "walk.mp4").stat().st_size > 0


def test_a_size_that_is_not_a_power_of_two_is_one_line(run_options: Callable[..., TrainOptions]) -> None:
    with pytest.raises(TrainingError, match="stylegan2 --crop-size 24: must be a power of two"):
        override(run_options(), crop_size=24, load_size=24).resolved()
