"""CUT / FastCUT generators load as published: their ``latest_net_G.pth`` state dicts, built here from an
independent re-implementation of the reference layer list (contrastive-unpaired-translation
``models/networks.py``: ``ResnetGenerator`` with ``Downsample``/``Upsample``), are recognised by their keys
and ``filt`` buffers, never taken for a CycleGAN ResNet (nor a CycleGAN file for a CUT one), compute what
the reference computes, and run on every CPU backend within 1e-4 of eager fp32."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cyclestream.cli import main
from cyclestream.engine.backends import FrameShape, create_backend
from cyclestream.engine.checkpoint import load_model, save_model
from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.jobs.translate import translate
from cyclestream.engine.jobs.verify import TOLERANCE, eager_output, model_input, relative_l2, sample_frames
from cyclestream.engine.models import cut, resnet
from cyclestream.engine.models.cut import CutSpec
from tests.engine.media_checks import decoded_frames
from tests.engine.models.test_families import EAGER

# ----------------------------------------------------------------------------- the reference, re-implemented

BLUR3 = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16  # [1,2,1] ⊗ [1,2,1], normalised
TENT4 = torch.tensor([1.0, 3.0, 3.0, 1.0])
UP4 = (TENT4[:, None] * TENT4[None, :]) / 64 * 4  # [1,3,3,1] ⊗ [1,3,3,1], normalised, × stride²


class RefDown(nn.Module):
    """Reflect-pad by 1 on every side, blur with BLUR3 per channel, keep every second pixel."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("filt", BLUR3.expand(c, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class RefUp(nn.Module):
    """Replicate-pad by 1, transposed stride-2 depthwise conv with UP4 and padding 2, drop the first row and
    column, then (even filter) the last row and column."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("filt", UP4.expand(c, 1, 4, 4).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(
            F.pad(x, (1, 1, 1, 1), mode="replicate"), self.filt, stride=2, padding=2, groups=x.shape[1]
        )
        return y[:, :, 1:, 1:][:, :, :-1, :-1]


class RefBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3, bias=True),
            nn.InstanceNorm2d(c),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3, bias=True),
            nn.InstanceNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def reference_generator(
    ngf: int,
    n_blocks: int,
    *,
    no_antialias: bool = False,
    no_antialias_up: bool = False,
    input_nc: int = 3,
    output_nc: int = 3,
) -> nn.Sequential:
    """The reference ``ResnetGenerator`` (instance norm, reflect padding, no dropout) as its ``model``
    Sequential; wrapped so the keys are ``model.N.*``."""
    norm = nn.InstanceNorm2d
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), norm(ngf), nn.ReLU(True)]
    for c in (ngf, 2 * ngf):
        if no_antialias:
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), norm(2 * c), nn.ReLU(True)]
        else:
            layers += [nn.Conv2d(c, 2 * c, 3, stride=1, padding=1), norm(2 * c), nn.ReLU(True), RefDown(2 * c)]
    layers += [RefBlock(4 * ngf) for _ in range(n_blocks)]
    for c in (4 * ngf, 2 * ngf):
        if no_antialias_up:
            layers += [
                nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                norm(c // 2),
                nn.ReLU(True),
            ]
        else:
            layers += [RefUp(c), nn.Conv2d(c, c // 2, 3, stride=1, padding=1), norm(c // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
    wrapper = nn.Module()
    wrapper.model = nn.Sequential(*layers)
    torch.manual_seed(7)
    for m in wrapper.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.3)
            nn.init.normal_(m.bias, 0.0, 0.1)
    return wrapper.model.eval()


def published(folder: Path, net: nn.Sequential, name: str = "latest_net_G.pth") -> Path:
    """The file as the reference's ``save_networks`` writes it: the generator's state dict."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save({f"model.{k}": v for k, v in net.state_dict().items()}, path)
    return path


VARIANTS = {
    "cut": {},  # CUT and FastCUT both publish this one (their default)
    "no_antialias": {"no_antialias": True},
    "no_antialias_up": {"no_antialias_up": True},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_published_cut_files_load_and_compute_what_the_reference_computes(tmp_path: Path, variant: str) -> None:
    flags = VARIANTS[variant]
    ref = reference_generator(4, 2, **flags)
    model = load_model(published(tmp_path, ref))
    assert model.family.name == "cut" and model.format == "official"
    assert model.spec == CutSpec(
        ngf=4, n_blocks=2, antialias=not flags.get("no_antialias"), antialias_up=not flags.get("no_antialias_up")
    )
    x = torch.rand(2, 3, 20, 28) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.generator(x), ref(x), rtol=1e-5, atol=1e-6)


def test_a_nine_block_file_has_the_published_key_layout() -> None:
    ref = reference_generator(8, 9)
    keys = {f"model.{k}": tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {"model.7.filt", "model.11.filt", "model.21.filt", "model.25.filt"} <= set(keys)
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in CutSpec(ngf=8).family.build(CutSpec(ngf=8)).state_dict().items()}
    assert ours == keys


def test_neither_family_takes_the_others_files(tmp_path: Path) -> None:
    from tests.engine.official_networks import ResnetGenerator  # the CycleGAN reference

    cyclegan = ResnetGenerator(3, 3, ngf=4, norm_layer=nn.InstanceNorm2d, n_blocks=2)
    path = tmp_path / "cyclegan.pth"
    torch.save(cyclegan.state_dict(), path)
    assert load_model(path).family.name == "resnet"
    cut_file = published(tmp_path, reference_generator(4, 2))
    assert load_model(cut_file).family.name == "cut"
    shapes = {k: tuple(v.shape) for k, v in torch.load(cut_file).items()}
    assert resnet.recognise(shapes) is None  # whatever order the recognisers are asked in
    assert cut.recognise({k: tuple(v.shape) for k, v in cyclegan.state_dict().items()}) is None
    # With both levels plain, a CUT generator is the CycleGAN ResNet layer for layer: it loads as one.
    plain = reference_generator(4, 2, no_antialias=True, no_antialias_up=True)
    model = load_model(published(tmp_path / "plain", plain))
    assert model.family.name == "resnet"
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.generator(x), plain(x), rtol=1e-5, atol=1e-6)


def damaged(change: Callable[[dict[str, torch.Tensor]], None]) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v for k, v in reference_generator(4, 2).state_dict().items()}
    change(state)
    return state


@pytest.mark.parametrize(
    ("state", "match"),
    [
        (
            damaged(lambda s: s.__setitem__("model.7.filt", torch.zeros(3, 1, 3, 3))),
            r"looks like a CUT/FastCUT generator .*differ at \['model.7.filt'\]",
        ),
        (damaged(lambda s: s.pop("model.15.weight")), r"looks like a CUT/FastCUT generator .*differ at"),
        (damaged(lambda s: [s.pop(k) for k in list(s) if "conv_block" in k]), "no contiguous residual blocks"),
        (damaged(lambda s: s.pop("model.1.weight")), "first layer is not a 7x7 convolution"),
    ],
)
def test_a_file_that_fits_no_family_is_refused_naming_what_it_looks_like(
    tmp_path: Path, state: dict[str, torch.Tensor], match: str
) -> None:
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=match) as caught:
        load_model(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_info_names_the_family_and_its_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = published(tmp_path, reference_generator(4, 2, no_antialias_up=True))
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "cut" and info["format"] == "official"
    assert info["architecture"] == "resnet_2blocks (CUT, anti-aliased down, --no_antialias_up)"
    assert info["generator"]["antialias"] is True and info["generator"]["antialias_up"] is False
    assert info["metadata"]["source"].startswith("contrastive-unpaired-translation")
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "cut: CUT / FastCUT" in text and "antialias_up  False" in text


def test_translate_on_video_equals_the_reference_frame_by_frame(make_clip: Callable[..., Path], tmp_path: Path) -> None:
    ref = reference_generator(4, 2)
    src = make_clip("in.mkv", width=38, height=30, frames=3)
    for path in (published(tmp_path, ref), None):
        if path is None:  # the project's own file of the same generator
            loaded = load_model(published(tmp_path, ref))
            path = save_model(tmp_path / "cut.safetensors", loaded.generator, loaded.spec)
        out = tmp_path / f"{path.stem}.mkv"
        translate(src, out, path, EAGER)
        for a, b in zip(decoded_frames(src), decoded_frames(out), strict=True):
            x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1
            x = F.pad(x, (1, 1, 1, 1), mode="reflect")  # the engine pads evenly to the multiple of 4
            with torch.no_grad():
                y = ref(x)[0, :, 1:31, 1:39]
            want = ((y + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
            assert np.abs(b.astype(int) - want.astype(int)).max() <= 1, path.name


@pytest.mark.parametrize("backend", ["compile", "onnxruntime", "openvino"])
def test_every_cpu_backend_matches_eager_fp32(tmp_path: Path, backend: str) -> None:
    pytest.importorskip({"compile": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}[backend])
    if backend != "compile":
        pytest.importorskip("onnxscript", reason="the ONNX export needs onnxscript")
    model = load_model(published(tmp_path, reference_generator(4, 2)))
    runner = create_backend(backend, device="cpu")
    if hasattr(runner, "cache_dir"):
        runner.cache_dir = tmp_path / "cache"  # type: ignore[attr-defined]
    runner.prepare(model, FrameShape(1, 32, 40), "fp32")  # type: ignore[arg-type]
    for n, h, w in [(1, 32, 40), (1, 30, 38)]:
        frames = sample_frames(n, h, w)
        assert runner.run(frames).shape == (n, h, w, 3)
        x = model_input(model, frames)
        assert relative_l2(runner.infer(x), eager_output(model, x)) < TOLERANCE["fp32"]


def test_the_fused_instance_norm_path_applies_to_its_norms(tmp_path: Path) -> None:
    import copy

    from cyclestream.engine.models.fuse import fuse_kernels

    model = load_model(published(tmp_path, reference_generator(4, 2)))
    fused = fuse_kernels(copy.deepcopy(model.generator), "reference")
    assert sum("Fused" in type(m).__name__ for m in fused.modules()) == 9  # every norm: stem, 2 down, 2x2 blocks, 2 up
    x = model_input(model, sample_frames(1, 32, 40))
    with torch.no_grad():
        assert relative_l2(fused(x), eager_output(model, x)) < TOLERANCE["fp32"]
