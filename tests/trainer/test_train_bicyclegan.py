"""``--model bicyclegan``: the step is junyanz/BicycleGAN's ``BiCycleGANModel.optimize_parameters``, checked
against an independent re-implementation of that model (its encoder, multi-scale discriminator, GAN loss and
step, written from the reference's layer lists) from the same weights, batches and seed, with the reference's
defaults and with each of its ``--where_add input``, ``--use_same_D`` and ``--conditional_D``; a tiny run on
aligned images trains, resumes bit for bit and writes a G.safetensors that translates with ``--z-seed`` (a
``--where-add input`` run: a generator of that layout)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cyclestream.engine.checkpoint import load_model
from cyclestream.trainer.bicyclegan import BicycleGANTask
from cyclestream.trainer.loop import train
from cyclestream.trainer.options import DataOptions, ModelOptions, OptimOptions, TrainingError, TrainOptions
from cyclestream.trainer.task import Runtime
from tests.engine.official_conditioned import BicycleAddAll, BicycleAddInput
from tests.trainer.helpers import Killed, aligned, assert_same_runs, kill_at, override, quiet_run

CPU = Runtime(torch.device("cpu"))
SIZE = 64  # the smallest side the U-Net with z at every level (6 levels) and the encoder allow


@pytest.fixture
def tiny_bicyclegan(tmp_path: Path) -> Callable[..., TrainOptions]:
    """Five aligned 64 px A|B images (so each epoch ends on a batch of one); widths 4, batch 2."""
    data = aligned(tmp_path / "data", 5, SIZE)

    def make(out: str = "run", **overrides: Any) -> TrainOptions:
        opts = TrainOptions(
            data=DataOptions(data=data, load_size=72, crop_size=SIZE),
            model=ModelOptions(model="bicyclegan", ngf=4, ndf=4, nef=4),
            optim=OptimOptions(epochs=1, epochs_decay=1),
            run=quiet_run(tmp_path / out, samples=1, precision="fp32"),
        )
        return override(opts, **overrides)

    return make


# ----------------------------------------------------------------------------- the reference, re-implemented


class RefBasicBlock(nn.Module):
    """``BasicBlock`` with instance norm and LeakyReLU(0.2): norm, nl, conv3x3, norm, nl, convMeanpool;
    shortcut meanpoolConv."""

    def __init__(self, inplanes: int, outplanes: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.InstanceNorm2d(inplanes),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(inplanes, inplanes, kernel_size=3, stride=1, padding=1, bias=True),
            nn.InstanceNorm2d(inplanes),
            nn.LeakyReLU(0.2, True),
            nn.Sequential(nn.Conv2d(inplanes, outplanes, 3, 1, 1, bias=True), nn.AvgPool2d(kernel_size=2, stride=2)),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=2), nn.Conv2d(inplanes, outplanes, 1, 1, 0))

    def forward(self, x):
        return self.conv(x) + self.shortcut(x)


class RefEResNet(nn.Module):
    """``E_ResNet(input_nc, output_nc=nz, ndf=nef, n_blocks, vaeLike=True)``."""

    def __init__(self, input_nc: int, output_nc: int, ndf: int, n_blocks: int) -> None:
        super().__init__()
        max_ndf = 4
        conv_layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1, bias=True)]
        for n in range(1, n_blocks):
            input_ndf = ndf * min(max_ndf, n)
            output_ndf = ndf * min(max_ndf, n + 1)
            conv_layers += [RefBasicBlock(input_ndf, output_ndf)]
        conv_layers += [nn.LeakyReLU(0.2, True), nn.AvgPool2d(8)]
        self.fc = nn.Sequential(nn.Linear(output_ndf, output_nc))
        self.fcVar = nn.Sequential(nn.Linear(output_ndf, output_nc))
        self.conv = nn.Sequential(*conv_layers)

    def forward(self, x):
        x_conv = self.conv(x)
        conv_flat = x_conv.view(x.size(0), -1)
        return self.fc(conv_flat), self.fcVar(conv_flat)


class RefDNLayersMulti(nn.Module):
    """``D_NLayersMulti(input_nc, ndf, n_layers=3, norm_layer=InstanceNorm2d, num_D=2)``."""

    def __init__(self, input_nc: int, ndf: int, n_layers: int = 3, num_D: int = 2) -> None:
        super().__init__()
        self.num_D = num_D
        self.add_module("model_0", nn.Sequential(*self.get_layers(input_nc, ndf, n_layers)))
        self.down = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)
        for i in range(1, num_D):
            ndf_i = round(ndf / (2**i))
            self.add_module(f"model_{i}", nn.Sequential(*self.get_layers(input_nc, ndf_i, n_layers)))

    @staticmethod
    def get_layers(input_nc, ndf, n_layers):
        seq: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
            seq += [
                nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=4, stride=2, padding=1),
                nn.InstanceNorm2d(ndf * nf_mult),
                nn.LeakyReLU(0.2, True),
            ]
        nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
        seq += [
            nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=4, stride=1, padding=1),
            nn.InstanceNorm2d(ndf * nf_mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * nf_mult, 1, kernel_size=4, stride=1, padding=1),
        ]
        return seq

    def forward(self, input):
        result, down = [], input
        for i in range(self.num_D):
            result.append(getattr(self, f"model_{i}")(down))
            if i != self.num_D - 1:
                down = self.down(down)
        return result


def ref_gan_loss(predictions, target_is_real):
    """``GANLoss('lsgan')(predictions, target)``: MSE to a label map, summed over the scales."""
    label = torch.tensor(1.0 if target_is_real else 0.0)
    losses = [nn.MSELoss()(p, label.expand_as(p)) for p in predictions]
    return sum(losses), losses


def with_reference_dropout(G: BicycleAddAll, num_downs: int) -> BicycleAddAll:
    """``--use_dropout`` in ``G_Unet_add_all``: Dropout(0.5) at the end of ``up`` in the block built right above
    the innermost and in the ``num_downs - 6`` built after it."""
    blocks = [G.model]
    while blocks[-1].submodule is not None:
        blocks.append(blocks[-1].submodule)
    innermost = len(blocks) - 1
    for k in range(1, 1 + 1 + (num_downs - 6)):
        blocks[innermost - k].up.append(nn.Dropout(0.5))
    return G


def with_reference_dropout_input(G: BicycleAddInput, num_downs: int) -> BicycleAddInput:
    """``--use_dropout`` in ``G_Unet_add_input``: Dropout(0.5) at the end of ``model`` in the ``num_downs - 5``
    blocks built right above the innermost."""
    blocks = [G.model]
    while True:
        inner = [m for m in blocks[-1].model if isinstance(m, type(G.model))]
        if not inner:
            break
        blocks.append(inner[0])
    innermost = len(blocks) - 1
    for k in range(1, 1 + (num_downs - 5)):
        blocks[innermost - k].model.append(nn.Dropout(0.5))
    return G


class ReferenceBiCycleGAN:
    """``BiCycleGANModel`` with its defaults but the weights given and ``use_same_D`` / ``conditional_D`` as
    asked (D2 is None with ``use_same_D``); E VAE-like; ``optimize_parameters`` on one batch."""

    def __init__(self, G, E, D, D2, *, lr, beta1, nz, lambda_L1, lambda_z, lambda_kl, lambda_GAN, lambda_GAN2,
                 use_same_D=False, conditional_D=False):  # fmt: skip
        self.netG, self.netE, self.netD, self.netD2, self.nz = G, E, D, D2, nz
        self.lambda_L1, self.lambda_z, self.lambda_kl = lambda_L1, lambda_z, lambda_kl
        self.lambda_GAN, self.lambda_GAN2 = lambda_GAN, lambda_GAN2
        self.use_same_D, self.conditional_D = use_same_D, conditional_D
        self.optimizer_G = torch.optim.Adam(G.parameters(), lr=lr, betas=(beta1, 0.999))
        self.optimizer_E = torch.optim.Adam(E.parameters(), lr=lr, betas=(beta1, 0.999))
        self.optimizer_D = torch.optim.Adam(D.parameters(), lr=lr, betas=(beta1, 0.999))
        if not use_same_D:
            self.optimizer_D2 = torch.optim.Adam(D2.parameters(), lr=lr, betas=(beta1, 0.999))
        self.criterionL1, self.criterionZ = nn.L1Loss(), nn.L1Loss()

    @staticmethod
    def set_requires_grad(nets, requires_grad):
        for net in nets:
            if net is not None:
                for param in net.parameters():
                    param.requires_grad = requires_grad

    def encode(self, input_image):
        mu, logvar = self.netE.forward(input_image)
        std = logvar.mul(0.5).exp_()
        eps = torch.randn(std.size(0), std.size(1))
        return eps.mul(std).add_(mu), mu, logvar

    def forward(self, real_A, real_B):
        half_size = real_A.size(0) // 2
        self.real_A_encoded, self.real_B_encoded = real_A[0:half_size], real_B[0:half_size]
        self.real_A_random, self.real_B_random = real_A[half_size:], real_B[half_size:]
        self.z_encoded, self.mu, self.logvar = self.encode(self.real_B_encoded)
        self.z_random = torch.randn(self.real_A_encoded.size(0), self.nz)
        self.fake_B_encoded = self.netG(self.real_A_encoded, self.z_encoded)
        self.fake_B_random = self.netG(self.real_A_encoded, self.z_random)
        if self.conditional_D:
            self.fake_data_encoded = torch.cat([self.real_A_encoded, self.fake_B_encoded], 1)
            self.real_data_encoded = torch.cat([self.real_A_encoded, self.real_B_encoded], 1)
            self.fake_data_random = torch.cat([self.real_A_encoded, self.fake_B_random], 1)
            self.real_data_random = torch.cat([self.real_A_random, self.real_B_random], 1)
        else:
            self.fake_data_encoded, self.fake_data_random = self.fake_B_encoded, self.fake_B_random
            self.real_data_encoded, self.real_data_random = self.real_B_encoded, self.real_B_random
        self.mu2, _ = self.netE(self.fake_B_random)

    def backward_D(self, netD, real, fake):
        loss_D_fake, _ = ref_gan_loss(netD(fake.detach()), False)
        loss_D_real, _ = ref_gan_loss(netD(real), True)
        loss_D = loss_D_fake + loss_D_real
        loss_D.backward()
        return loss_D

    def backward_EG(self):
        self.loss_G_GAN = ref_gan_loss(self.netD(self.fake_data_encoded), True)[0] * self.lambda_GAN
        netD2 = self.netD if self.use_same_D else self.netD2
        self.loss_G_GAN2 = ref_gan_loss(netD2(self.fake_data_random), True)[0] * self.lambda_GAN2
        self.loss_kl = torch.sum(1 + self.logvar - self.mu.pow(2) - self.logvar.exp()) * (-0.5 * self.lambda_kl)
        self.loss_G_L1 = self.criterionL1(self.fake_B_encoded, self.real_B_encoded) * self.lambda_L1
        self.loss_G = self.loss_G_GAN + self.loss_G_GAN2 + self.loss_G_L1 + self.loss_kl
        self.loss_G.backward(retain_graph=True)

    def update_G_and_E(self):
        self.set_requires_grad([self.netD, self.netD2], False)
        self.optimizer_E.zero_grad()
        self.optimizer_G.zero_grad()
        self.backward_EG()
        self.set_requires_grad([self.netE], False)
        self.loss_z_L1 = self.criterionZ(self.mu2, self.z_random) * self.lambda_z
        self.loss_z_L1.backward()
        self.set_requires_grad([self.netE], True)
        self.optimizer_E.step()
        self.optimizer_G.step()

    def update_D(self):
        self.set_requires_grad([self.netD, self.netD2], True)
        self.optimizer_D.zero_grad()
        self.loss_D = self.backward_D(self.netD, self.real_data_encoded, self.fake_data_encoded)
        if self.use_same_D:
            self.loss_D2 = self.backward_D(self.netD, self.real_data_random, self.fake_data_random)
        self.optimizer_D.step()
        if not self.use_same_D:
            self.optimizer_D2.zero_grad()
            self.loss_D2 = self.backward_D(self.netD2, self.real_data_random, self.fake_data_random)
            self.optimizer_D2.step()

    def optimize_parameters(self, real_A, real_B) -> dict[str, float]:
        self.forward(real_A, real_B)
        self.update_G_and_E()
        self.update_D()
        names = ("G_GAN", "D", "G_GAN2", "D2", "G_L1", "z_L1", "kl")
        return {n: float(getattr(self, f"loss_{n}").detach()) for n in names}


# ----------------------------------------------------------------------------- the checks


def sgd(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(list(params), lr=0.05, momentum=0.5)


def snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


CHOICES = {  # the reference's --where_add input, --use_same_D, --conditional_D, one at a time
    "defaults": {},
    "where_add_input": {"where_add": "input"},
    "use_same_d": {"use_same_d": True},
    "conditional_d": {"conditional_d": True},
}


@pytest.mark.parametrize("choice", list(CHOICES))
def test_the_bicyclegan_step_is_the_reference_optimize_parameters(
    tiny_bicyclegan: Callable[..., TrainOptions], choice: str
) -> None:
    # Every weight away from its default, so that each term is checked with its own weight.
    opts = tiny_bicyclegan(
        "objective", lambda_l1=7.0, lambda_z=0.9, lambda_kl=0.3, lambda_gan=0.8, lambda_gan2=1.3, **CHOICES[choice]
    ).resolved()
    m, o = opts.model, opts.optim
    assert (m.nz, m.n_blocks, m.dropout, m.gan_mode, o.batch_size) == (8, 6, True, "lsgan", 2)  # the recipe
    task = BicycleGANTask(opts, CPU)
    task.wrap()
    if m.where_add == "input":
        G = with_reference_dropout_input(BicycleAddInput(3, 3, 8, num_downs=6, ngf=4), num_downs=6)
    else:
        G = with_reference_dropout(BicycleAddAll(3, 3, 8, num_downs=6, ngf=4), num_downs=6)
    D_output_nc = 3 + 3 if m.conditional_d else 3  # the reference's input_nc + output_nc when conditional_D
    nets = {
        "G": G,
        "E": RefEResNet(3, 8, 4, n_blocks=3),  # resnet_256's layer list, three blocks for 64 px
        "D": RefDNLayersMulti(D_output_nc, 4),
    }
    if not m.use_same_d:
        nets["D2"] = RefDNLayersMulti(D_output_nc, 4)
    assert sorted(task.nets) == sorted(nets)  # no D2 with use_same_D
    for name, net in nets.items():
        net.load_state_dict(task.nets[name].state_dict())  # the published key layout, key for key
        net.train()
    ref = ReferenceBiCycleGAN(
        nets["G"],
        nets["E"],
        nets["D"],
        nets.get("D2"),
        use_same_D=m.use_same_d,
        conditional_D=m.conditional_d,
        lr=o.lr,
        beta1=o.beta1,
        nz=8,
        lambda_L1=m.lambda_l1,
        lambda_z=m.lambda_z,
        lambda_kl=m.lambda_kl,
        lambda_GAN=m.lambda_gan,
        lambda_GAN2=m.lambda_gan2,
    )
    # SGD with momentum on both sides: Adam's first steps are ±lr wherever a gradient is tiny, so rounding alone
    # would flip some of them.  The weights are compared after the first step (which already holds every term,
    # and G and E stepping through D before D steps); the losses of three steps follow the weights further.
    # (Later weights drift apart in the last bits: a bias before an instance norm has no gradient but rounding.)
    for name, nets_of in (("G", ("G", "E")), ("D", ("D",)), ("D2", ("D2",))):
        if name in nets:
            task.optimizers[name] = sgd(p for n in nets_of for p in task.nets[n].parameters())
    for name in nets:
        setattr(ref, f"optimizer_{name}", sgd(nets[name].parameters()))
    gen = torch.Generator().manual_seed(5)
    data = [{k: torch.rand(2, 3, SIZE, SIZE, generator=gen) * 2 - 1 for k in ("A", "B")} for _ in range(3)]
    before = {name: snapshot(net) for name, net in nets.items()}
    torch.manual_seed(9)
    got = [task.step(data[0])]
    mine = {name: snapshot(task.nets[name]) for name in nets}
    got += [task.step(b) for b in data[1:]]
    torch.manual_seed(9)
    want = [ref.optimize_parameters(data[0]["A"], data[0]["B"])]
    theirs = {name: snapshot(net) for name, net in nets.items()}
    want += [ref.optimize_parameters(b["A"], b["B"]) for b in data[1:]]
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        assert sorted(g) == sorted(w)
        for name in w:
            assert float(g[name]) == pytest.approx(w[name], rel=1e-5, abs=1e-6), f"step {step + 1}: {name}"
    moved = 0.0
    for name, state in theirs.items():
        for key, value in state.items():
            change = float((value - before[name][key]).abs().max())
            moved = max(moved, change)
            torch.testing.assert_close(mine[name][key], value, rtol=0, atol=1e-4 * change + 1e-8,
                                       msg=lambda s, k=f"{name}.{key}": f"{k}: {s}")  # fmt: skip
    assert moved > 1e-4  # the step moved the weights well beyond the tolerance


def translations_with_z_seeds(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], seeds: tuple[int, ...] = (1, 2)
) -> list[np.ndarray]:
    """``translate --z-seed N`` of the first training input's A half with ``model_file``, each output checked
    against the loaded generator on that image and z = randn(1, nz) of the seed."""
    from cyclestream.cli import main

    model = load_model(model_file)
    rgb = np.asarray(Image.open(next((tmp_path / "data").glob("*.png"))).convert("RGB"))[:, :SIZE]
    Image.fromarray(rgb).save(tmp_path / "in.png")
    outs = []
    for seed in seeds:
        out = tmp_path / f"out{seed}.png"
        argv = ["translate", str(tmp_path / "in.png"), str(out), "--model", str(model_file),
                "--backend", "eager", "--temporal", "off", "--no-preview", "--z-seed", str(seed)]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
        outs.append(np.asarray(Image.open(out).convert("RGB")))
        z = torch.randn(1, model.spec.nz, generator=torch.Generator().manual_seed(seed))
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            y = model.generator(x, z)
        expected = ((y[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        assert np.abs(outs[-1].astype(int) - expected.astype(int)).max() <= 1
    return outs


def test_bicyclegan_options_refuse_what_its_networks_cannot_take(
    tiny_bicyclegan: Callable[..., TrainOptions],
) -> None:
    for overrides, message in (
        ({"crop_size": 32, "load_size": 32}, "bicyclegan --crop-size 32: must be a power of two, at least 64"),
        ({"crop_size": 96, "load_size": 96}, "bicyclegan --crop-size 96: must be a power of two"),
        ({"batch_size": 3}, "bicyclegan takes an even batch per process"),
        ({"norm": "batch"}, "bicyclegan --norm batch: only instance norm"),
        ({"n_blocks": 7}, "bicyclegan --n-blocks 7: the U-Net needs at least 6 levels and --crop-size 64"),
        ({"data": None}, "bicyclegan needs --data DIR"),
        ({"where_add": "input", "n_blocks": 4}, "bicyclegan --n-blocks 4: the U-Net needs at least 5 levels"),
        ({"use_same_d": True, "lambda_gan": 0.0}, "bicyclegan --use-same-d trains the one discriminator as D"),
    ):
        with pytest.raises(TrainingError, match="^" + message):
            tiny_bicyclegan(**overrides).resolved()


def test_a_bicyclegan_run_resumes_bit_for_bit_and_translates_with_a_z_seed(
    tiny_bicyclegan: Callable[..., TrainOptions], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cyclestream.cli import main

    reference = train(tiny_bicyclegan("reference")).run_dir
    with pytest.raises(Killed):
        train(tiny_bicyclegan("killed", save_every_iters=2), on_iteration=kill_at(4))
    result = train(tiny_bicyclegan("killed", resume=True, save_every_iters=2))
    assert result.finished
    assert_same_runs(reference, result.run_dir)
    assert {"latest_net_G.pth", "latest_net_E.pth"} <= {p.name for p in reference.iterdir()}
    model = load_model(reference / "G.safetensors")
    assert model.family.name == "bicyclegan" and (model.spec.nz, model.spec.n_blocks) == (8, 6)
    assert main(["info", str(reference / "G.safetensors")]) == 0
    assert "bicyclegan" in capsys.readouterr().out
    outs = translations_with_z_seeds(reference / "G.safetensors", tmp_path, capsys)
    assert outs[0].shape == (SIZE, SIZE, 3) and not np.array_equal(outs[0], outs[1])  # z changes the output


def test_a_where_add_input_run_saves_and_translates_a_generator_with_z_at_the_input(
    tiny_bicyclegan: Callable[..., TrainOptions], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cyclestream.cli import main

    tiny_bicyclegan()  # the fixture's aligned images in tmp_path/data
    out = tmp_path / "input"
    argv = ["-q", "train", "--model", "bicyclegan", "--data", str(tmp_path / "data"), "--out", str(out),
            "--where-add", "input", "--ngf", "4", "--ndf", "4", "--nef", "4", "--load-size", "72", "--crop-size",
            str(SIZE), "--epochs", "1", "--epochs-decay", "0", "--samples", "1", "--precision", "fp32",
            "--threads", "1", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    model = load_model(out / "G.safetensors")
    assert model.family.name == "bicyclegan" and model.spec.where_add == "input"
    assert (model.spec.nz, model.spec.n_blocks, model.spec.ngf) == (8, 6, 4)
    assert model.metadata["training"]["model"]["where_add"] == "input"
    # the published key layout of G_Unet_add_input: its first convolution over the image and z's planes
    keys = set(model.generator.state_dict())
    reference = BicycleAddInput(3, 3, 8, num_downs=6, ngf=4)
    assert keys == set(reference.state_dict()) and model.generator.model.model[0].in_channels == 3 + 8
    official = load_model(out / "latest_net_G.pth")  # the reference's file of it, recognised from its keys
    assert official.spec.where_add == "input"
    outs = translations_with_z_seeds(out / "G.safetensors", tmp_path, capsys)
    assert not np.array_equal(outs[0], outs[1])  # z changes the output
