"""StyleGAN2 generators from rosinality/stylegan2-pytorch checkpoints, and ``cyclestream generate``.

``Reference*`` below is that project's ``model.py`` Generator written out again here, layer by layer
(its unfused modulated convolution, its native ``upfirdn2d`` and ``fused_leaky_relu`` CPU paths), with
one addition: the channel table can be given, so most tests run at 16 px with a few channels (the
published table, 512 channels up to 32 px, is tested at 8 px).  Checkpoints are written the way its
``train.py`` saves them: ``g``, ``d``, ``g_ema``, the optimisers' states and an ``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import pickle
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cyclestream.cli import main
from cyclestream.engine.checkpoint import load_model, save_model
from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.jobs.generate import renderer, walk_positions
from cyclestream.engine.jobs.generate_options import GenerateOptions
from cyclestream.engine.models.stylegan2 import StyleGAN2Spec
from tests.engine.media.ffprobe import ffprobe_streams

STYLE_DIM, N_MLP = 32, 2
SMALL = {4: 16, 8: 12, 16: 8}  # a 16 px generator with few channels


def published_table(multiplier: int) -> dict[int, int]:
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * multiplier, 128: 128 * multiplier,
            256: 64 * multiplier, 512: 32 * multiplier, 1024: 16 * multiplier}  # fmt: skip


# ----------------------------------------------------------------------------- the reference, written out


def ref_upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """op/upfirdn2d.py ``upfirdn2d_native`` with down=1 and non-negative pads."""
    _, channel, in_h, in_w = x.shape
    out = x.reshape(-1, in_h, 1, in_w, 1, 1)
    out = F.pad(out, [0, 0, 0, up - 1, 0, 0, 0, up - 1]).view(-1, in_h * up, in_w * up, 1)
    out = F.pad(out, [0, 0, pad[0], pad[1], pad[0], pad[1]])
    out = out.permute(0, 3, 1, 2).reshape(-1, 1, in_h * up + sum(pad), in_w * up + sum(pad))
    out = F.conv2d(out, torch.flip(kernel, [0, 1]).view(1, 1, *kernel.shape))
    return out.reshape(-1, channel, out.shape[2], out.shape[3])


def ref_lrelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """op/fused_act.py's CPU path."""
    return F.leaky_relu(x + bias.view(1, bias.shape[0], *[1] * (x.ndim - 2)), negative_slope=0.2) * 2**0.5


def ref_kernel(factor: int = 1) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[None, :] * k[:, None]
    return k / k.sum() * factor**2


class RefEqualLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0, lr_mul: float = 1, act: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init))
        self.scale, self.lr_mul, self.act = lr_mul / math.sqrt(in_dim), lr_mul, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act:
            return ref_lrelu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class RefPixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class RefBlur(nn.Module):
    def __init__(self, pad: tuple[int, int], factor: int) -> None:
        super().__init__()
        self.register_buffer("kernel", ref_kernel(factor))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ref_upfirdn2d(x, self.kernel, pad=self.pad)


class RefModulatedConv2d(nn.Module):
    """ModulatedConv2d with fused=False."""

    def __init__(self, cin: int, cout: int, k: int, demodulate: bool = True, upsample: bool = False) -> None:
        super().__init__()
        self.upsample, self.demodulate, self.padding = upsample, demodulate, k // 2
        if upsample:
            p = (4 - 2) - (k - 1)
            self.blur = RefBlur(((p + 1) // 2 + 2 - 1, p // 2 + 1), 2)
        self.scale = 1 / math.sqrt(cin * k**2)
        self.weight = nn.Parameter(torch.randn(1, cout, cin, k, k))
        self.modulation = RefEqualLinear(STYLE_DIM, cin, bias_init=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, cin = x.shape[:2]
        weight = self.scale * self.weight.squeeze(0)
        style = self.modulation(style)
        if self.demodulate:
            w = weight.unsqueeze(0) * style.view(batch, 1, cin, 1, 1)
            dcoefs = (w.square().sum((2, 3, 4)) + 1e-8).rsqrt()
        x = x * style.reshape(batch, cin, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        return out * dcoefs.view(batch, -1, 1, 1) if self.demodulate else out


class RefNoise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class RefFusedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))


class RefStyledConv(nn.Module):
    def __init__(self, cin: int, cout: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = RefModulatedConv2d(cin, cout, 3, upsample=upsample)
        self.noise = RefNoise()
        self.activate = RefFusedLeakyReLU(cout)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        out = self.conv(x, style)
        if noise is None:  # NoiseInjection's fresh draw (training: randomize_noise)
            noise = out.new_empty(out.shape[0], 1, *out.shape[2:]).normal_()
        return ref_lrelu(out + self.noise.weight * noise, self.activate.bias)


class RefUpsample(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", ref_kernel(2))
        p = 4 - 2
        self.pad = ((p + 1) // 2 + 2 - 1, p // 2)


class RefToRGB(nn.Module):
    def __init__(self, cin: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = RefUpsample()
        self.conv = RefModulatedConv2d(cin, 3, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + ref_upfirdn2d(skip, self.upsample.kernel, up=2, pad=self.upsample.pad)
        return out


class RefConstant(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))


class ReferenceGenerator(nn.Module):
    def __init__(self, size: int, channels: dict[int, int], lr_mlp: float = 0.01) -> None:
        super().__init__()
        self.style = nn.Sequential(RefPixelNorm(), *[RefEqualLinear(STYLE_DIM, STYLE_DIM, lr_mul=lr_mlp, act=True)
                                                     for _ in range(N_MLP)])  # fmt: skip
        self.input = RefConstant(channels[4])
        self.conv1 = RefStyledConv(channels[4], channels[4])
        self.to_rgb1 = RefToRGB(channels[4], upsample=False)
        self.log_size = int(math.log(size, 2))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs, self.upsamples, self.to_rgbs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2**res, 2**res))
        cin = channels[4]
        for i in range(3, self.log_size + 1):
            cout = channels[2**i]
            self.convs.append(RefStyledConv(cin, cout, upsample=True))
            self.convs.append(RefStyledConv(cout, cout))
            self.to_rgbs.append(RefToRGB(cout))
            cin = cout
        for name, p in self.named_parameters():  # trained-looking values: no zero noise weights or biases
            if name.endswith("modulation.bias"):
                nn.init.normal_(p, 1.0, 0.2)
            elif name.endswith(("bias", "noise.weight")):
                nn.init.normal_(p, 0.0, 0.2)

    def forward(self, z: torch.Tensor, truncation: float = 1, truncation_latent: torch.Tensor | None = None,
                z2: torch.Tensor | None = None, inject_index: int = 0, randomize_noise: bool = False):  # fmt: skip
        """Generator.forward([z] or [z, z2], ...): truncation, style mixing from ``inject_index``, noise."""
        style = self.style(z)
        if truncation < 1:
            style = truncation_latent + truncation * (style - truncation_latent)
        n_latent = self.log_size * 2 - 2
        latent = style.unsqueeze(1).repeat(1, n_latent, 1)
        if z2 is not None:
            latent2 = self.style(z2).unsqueeze(1).repeat(1, n_latent - inject_index, 1)
            latent = torch.cat([style.unsqueeze(1).repeat(1, inject_index, 1), latent2], 1)
        noise = [None if randomize_noise else getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        out = self.input.input.repeat(z.shape[0], 1, 1, 1)
        out = self.conv1(out, latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, n1, n2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2],
                                                self.to_rgbs, strict=True):  # fmt: skip
            out = conv2(conv1(out, latent[:, i], n1), latent[:, i + 1], n2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip, latent


def _checkpoint(g_ema: nn.Module, size: int, **extra: object) -> dict[str, object]:
    """train.py's ``torch.save`` dict: the two generators, a (tiny) discriminator, optimiser states, args."""
    g = {k: v + 1 for k, v in g_ema.state_dict().items()}  # the training generator: other weights
    optim = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
             "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "params": [0]}]}  # fmt: skip
    args = argparse.Namespace(size=size, latent=STYLE_DIM, n_mlp=N_MLP, channel_multiplier=2, r1=10, path="lmdb")
    return {"g": g, "d": {"final_linear.1.weight": torch.zeros(1, 4)}, "g_ema": g_ema.state_dict(), "g_optim": optim,
            "d_optim": optim, "args": args, "ada_aug_p": 0.0, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReferenceGenerator, Path]:
    torch.manual_seed(0)
    ref = ReferenceGenerator(16, SMALL).eval()
    path = tmp_path_factory.mktemp("sg2") / "080000.pt"
    torch.save(_checkpoint(ref, 16, latent_avg=torch.randn(STYLE_DIM) * 0.1), path)
    return ref, path


def _z(seed: int) -> torch.Tensor:
    return torch.randn(1, STYLE_DIM, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- loading


def test_a_training_checkpoint_loads_with_no_flags_and_matches_the_reference(small) -> None:
    ref, path = small
    model = load_model(path)
    assert model.spec == StyleGAN2Spec(size=16, style_dim=STYLE_DIM, n_mlp=N_MLP, channels=(16, 12, 8))
    assert model.family.name == "stylegan2" and not model.family.image_input
    z = torch.cat([_z(1), _z(2)])
    with torch.no_grad():
        want, _ = ref(z)
        got = model.generator(z)
    assert got.shape == (2, 3, 16, 16)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_generate_renders_the_references_truncated_image_at_each_seed(small) -> None:
    """The walk's first and last frames are the seeds' images, truncated towards the file's latent_avg."""
    ref, path = small
    model = load_model(path)
    average = torch.load(path, weights_only=False)["latent_avg"]
    render = renderer(model, GenerateOptions(seeds=(4, 9), truncation=0.5), torch.device("cpu"))
    with torch.no_grad():
        got = render(torch.tensor([0.0, 1.0], dtype=torch.float64))
        want, _ = ref(torch.cat([_z(4), _z(9)]), truncation=0.5, truncation_latent=average)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_style_mixing_and_fresh_noise_are_the_references(small) -> None:
    """Training's call: the second latent's w from layer ``crossover`` on, new noise each layer, w returned."""
    ref, path = small
    model = load_model(path).generator
    z, z2 = _z(1).repeat(2, 1), torch.cat([_z(2), _z(3)])
    for crossover in (1, 4, model.latents - 1):
        with torch.no_grad():
            torch.manual_seed(crossover)
            want, want_w = ref(z, z2=z2, inject_index=crossover, randomize_noise=True)
            torch.manual_seed(crossover)
            got, got_w = model(z, mix=z2, crossover=crossover, random_noise=True, return_latents=True)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got_w, want_w)
    assert got_w.shape == (2, model.latents, STYLE_DIM)


def test_the_published_channel_table_and_a_plain_g_ema_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ref = ReferenceGenerator(8, published_table(2)).eval()
    path = tmp_path / "g_ema.pt"
    torch.save(ref.state_dict(), path)
    model = load_model(path)
    assert model.spec.channels == (512, 512) and model.spec.official_name == "stylegan2_8px"
    with torch.no_grad():
        torch.testing.assert_close(model.generator(_z(3)), ref(_z(3))[0], atol=1e-4, rtol=1e-4)


def test_g_is_used_when_there_is_no_g_ema(tmp_path: Path, small) -> None:
    ref, _ = small
    checkpoint = _checkpoint(ref, 16)
    del checkpoint["g_ema"]
    checkpoint["g"] = ref.state_dict()
    path = tmp_path / "g.pt"
    torch.save(checkpoint, path)
    with torch.no_grad():
        torch.testing.assert_close(load_model(path).generator(_z(5)), ref(_z(5))[0], atol=1e-4, rtol=1e-4)


def test_a_cyclestream_model_file_of_it_round_trips(tmp_path: Path, small) -> None:
    _, path = small
    model = load_model(path)
    saved = save_model(tmp_path / "sg2.safetensors", model.generator, model.spec)
    again = load_model(saved)
    assert again.spec == model.spec and again.format == "cyclestream"
    with torch.no_grad():
        torch.testing.assert_close(again.generator(_z(7)), model.generator(_z(7)))
    # the mean w truncation pulls towards travels with the weights: the same truncated walk either way
    torch.testing.assert_close(again.generator.mean_latent, torch.load(path, weights_only=False)["latent_avg"][None])
    options = GenerateOptions(seeds=(4, 9), truncation=0.5)
    at = torch.tensor([0.0, 0.5], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(renderer(again, options, torch.device("cpu"))(at),
                                   renderer(model, options, torch.device("cpu"))(at))  # fmt: skip


def test_info_names_the_family(small, capsys: pytest.CaptureFixture[str]) -> None:
    _, path = small
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "stylegan2" in out and "rosinality" not in out.splitlines()[0]
    assert "latent z of 32 values" in out


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda s: s.pop("convs.2.conv.weight"), "unrecognised StyleGAN2 synthesis layout"),
        (lambda s: s.pop("style.1.weight"), "unrecognised StyleGAN2 mapping network layout"),
        (lambda s: s.update({"input.input": torch.zeros(1, 16, 5, 5)}), "constant input"),
        (lambda s: s.update({"convs.1.conv.weight": torch.zeros(1, 12, 7, 3, 3)}), "weights do not fit"),
        (lambda s: s.pop("noises.noise_2"), "missing"),
    ],
    ids=["no-conv", "no-mapping", "constant", "shape", "noise"],
)
def test_a_damaged_layout_is_one_line(tmp_path: Path, small, damage, match: str) -> None:
    ref, _ = small
    state = dict(ref.state_dict())
    damage(state)
    path = tmp_path / "damaged.pt"
    torch.save(_checkpoint(ref, 16) | {"g_ema": state}, path)
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


class _MakesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("zipped", [True, False], ids=["torch.save", "plain-pickle"])
def test_a_checkpoint_with_code_beside_its_args_is_refused_and_runs_nothing(tmp_path: Path, zipped: bool) -> None:
    """Allowing argparse.Namespace allows nothing else: an NVlabs-style snapshot object beside it is refused."""
    marker = tmp_path / "marker"
    obj = {"G_ema": _MakesMarker(marker), "args": argparse.Namespace(size=16), "g_ema": {"x": torch.zeros(1)}}
    path = tmp_path / "network-snapshot-000100.pkl"
    torch.save(obj, path) if zipped else path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(CheckpointError, match="pickled Python objects") as err:
        load_model(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert not marker.exists()


# ----------------------------------------------------------------------------- generate


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.float64) for f in container.decode(video=0)]


def test_generate_writes_a_smooth_walk_ffprobe_reads(tmp_path: Path, small, capsys: pytest.CaptureFixture[str]) -> None:
    _, path = small
    out = tmp_path / "walk.mp4"
    code = main(["-q", "generate", str(path), "--walk", "2", "--fps", "12", "--seeds", "1,2,3", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    (stream,) = ffprobe_streams(out)
    assert (stream["width"], stream["height"], int(stream["nb_frames"])) == (16, 16, 24)
    assert Fraction(stream["avg_frame_rate"]) == 12
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial file left
    frames = _decoded(out)
    steps = [np.abs(b - a).mean() for a, b in itertools.pairwise(frames)]
    apart = np.abs(frames[-1] - frames[0]).mean()
    assert apart > 10 and max(steps) < apart / 3  # seed to seed it changes; frame to frame only a little


def test_walk_positions_start_and_end_on_seeds_and_ease() -> None:
    p = walk_positions(9, 3)
    assert p[0] == 0 and p[-1] == 2 and p[4] == 1
    assert torch.all(p[1:] >= p[:-1])


def test_generate_walks_a_dcgan_too(tmp_path: Path) -> None:
    torch.manual_seed(2)
    nz, ngf = 8, 4  # pytorch/examples dcgan's layout at 16 px
    net = nn.Sequential(nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
                        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
                        nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh())  # fmt: skip
    path = tmp_path / "netG_epoch_3.pth"
    torch.save({f"main.{k}": v for k, v in net.state_dict().items()}, path)
    out = tmp_path / "dcgan.mkv"
    assert main(["-q", "generate", str(path), "--walk", "1", "--fps", "10", "--seeds", "5,6", "--out", str(out)]) == 0
    (stream,) = ffprobe_streams(out)
    assert (stream["width"], stream["height"]) == (16, 16) and len(_decoded(out)) == 10


def test_generate_refuses_a_translating_model_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cyclestream.bundled import DEFAULT_MODEL

    assert main(["generate", str(DEFAULT_MODEL), "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "translates images" in err
    assert not list(tmp_path.iterdir())
